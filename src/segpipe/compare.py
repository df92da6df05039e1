"""Comparing two runs' results: every file byte for byte, every Parquet table value for
value, timing aside. The check that a refactor keeps every output, and that a resumed run
ends as an uninterrupted one does.

    python -m segpipe.compare BEFORE/results AFTER/results

prints each difference and a count, and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

# Report files drawn from the timing columns (seconds per image): they differ between any
# two runs, as the timing columns do.
TIMED_FILES = frozenset({"report/leaderboard.html", "report/quality_runtime.png",
                         "report/distributions.png", "report.html"})


def is_timing(column: str) -> bool:
    """Whether a column holds seconds: ``*_s``, their aggregates (``write_s_mean``),
    ``seconds_*``.

    >>> [c for c in ("runtime_s", "write_s_mean", "seconds_per_image", "iou") if is_timing(c)]
    ['runtime_s', 'write_s_mean', 'seconds_per_image']
    """
    return column.endswith("_s") or "_s_" in column or column.startswith("seconds_")


def differences(before: Path, after: Path, *, skip: Iterable[str] = TIMED_FILES) -> list[str]:
    """What differs between two result trees, one line each: files only on one side,
    files whose bytes differ, and table columns whose values differ (timing columns and
    the files in ``skip`` aside)."""
    import pyarrow.parquet as pq

    before, after = Path(before), Path(after)
    files = {side: {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
             for side, root in (("before", before), ("after", after))}
    found = [f"only {side}: {name}" for side, other in (("before", "after"), ("after", "before"))
             for name in sorted(files[side] - files[other])]
    for name in sorted(files["before"] & files["after"] - set(skip)):
        a, b = before / name, after / name
        if not name.endswith(".parquet"):
            if a.read_bytes() != b.read_bytes():
                found.append(f"{name}: bytes differ")
            continue
        ta, tb = pq.read_table(a), pq.read_table(b)
        if ta.column_names != tb.column_names:
            found.append(f"{name}: columns differ")
            continue
        found += [f"{name}: column {c} differs" for c in ta.column_names
                  if not is_timing(c) and not ta.column(c).equals(tb.column(c))]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare two runs' results, timing aside.")
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    found = differences(args.before, args.after)
    print("\n".join([*found, f"{len(found)} differences"]))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
