"""segpipe.compare: the before/after check of a refactor and of a resumed run."""

import pyarrow as pa
import pyarrow.parquet as pq

from segpipe.compare import differences, main


def tree(root, mask=b"\x89PNG...", iou=0.5, runtime=1.0, page=b"<html>"):
    (root / "masks").mkdir(parents=True)
    (root / "masks" / "a.png").write_bytes(mask)
    (root / "report.html").write_bytes(page)
    pq.write_table(pa.table({"iou": [iou], "runtime_s": [runtime]}), root / "m.parquet")
    return root


def test_same_outputs_with_other_timings_are_the_same(tmp_path):
    before = tree(tmp_path / "a")
    assert differences(before, tree(tmp_path / "b", runtime=9.0, page=b"<html>9 s")) == []


def test_a_byte_a_value_or_a_file_is_a_difference(tmp_path):
    a = tree(tmp_path / "a")
    assert differences(a, tree(tmp_path / "b", mask=b"other")) == ["masks/a.png: bytes differ"]
    assert differences(a, tree(tmp_path / "c", iou=0.6)) == ["m.parquet: column iou differs"]
    extra = tree(tmp_path / "d")
    (extra / "new.txt").write_text("x")
    assert differences(a, extra) == ["only after: new.txt"]
    assert main([str(a), str(extra)]) == 1
