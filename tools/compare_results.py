#!/usr/bin/env python3
"""Compare two runs' results: every file byte for byte, every Parquet table value for value
(timing columns aside). The check that a refactor keeps every output.

    .venv/bin/python tools/compare_results.py BEFORE/results AFTER/results

Prints each difference and a count; exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow.parquet as pq


def timing(column: str) -> bool:
    """Seconds (``*_s``, their aggregates ``write_s_mean``, ``seconds_*``) differ between
    any two runs."""
    return column.endswith("_s") or "_s_" in column or column.startswith("seconds_")


def compare(before: Path, after: Path) -> list[str]:
    """The differences between two result trees, one line each."""
    files = {side: {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
             for side, root in (("before", before), ("after", after))}
    found = [f"only {side}: {name}" for side, other in (("before", "after"), ("after", "before"))
             for name in sorted(files[side] - files[other])]
    for name in sorted(files["before"] & files["after"]):
        a, b = before / name, after / name
        if name.endswith(".parquet"):
            ta, tb = pq.read_table(a), pq.read_table(b)
            if ta.column_names != tb.column_names:
                found.append(f"{name}: columns differ")
                continue
            found += [f"{name}: column {c} differs" for c in ta.column_names
                      if not timing(c) and ta.column(c).to_pylist() != tb.column(c).to_pylist()]
        elif a.read_bytes() != b.read_bytes():
            found.append(f"{name}: bytes differ")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    found = compare(args.before, args.after)
    print("\n".join(found + [f"{len(found)} differences"]))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
