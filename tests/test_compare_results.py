"""tools/compare_results.py: the before/after check of a refactor."""

import importlib.util

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import ROOT

spec = importlib.util.spec_from_file_location("compare_results", ROOT / "tools/compare_results.py")
compare_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_results)


def tree(root, mask=b"\x89PNG...", iou=0.5, runtime=1.0):
    (root / "masks").mkdir(parents=True)
    (root / "masks" / "a.png").write_bytes(mask)
    pq.write_table(pa.table({"iou": [iou], "runtime_s": [runtime]}), root / "m.parquet")
    return root


def test_same_outputs_with_other_timings_are_the_same(tmp_path):
    assert compare_results.compare(tree(tmp_path / "a"), tree(tmp_path / "b", runtime=9.0)) == []


def test_a_byte_a_value_or_a_file_is_a_difference(tmp_path):
    a = tree(tmp_path / "a")
    assert compare_results.compare(a, tree(tmp_path / "b", mask=b"other")) == [
        "masks/a.png: bytes differ"]
    assert compare_results.compare(a, tree(tmp_path / "c", iou=0.6)) == [
        "m.parquet: column iou differs"]
    extra = tree(tmp_path / "d")
    (extra / "new.txt").write_text("x")
    assert compare_results.main([str(a), str(extra)]) == 1
