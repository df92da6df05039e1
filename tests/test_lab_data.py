"""A lab folder end to end: OME-TIFF channels, z-stacks, 12-bit and float data, masks
beside their images, stray files, and TIFF label masks (issue 11)."""

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from segpipe.imageio import read_label_image

from conftest import blobs_image, run_snakemake, write_config

pytestmark = pytest.mark.e2e


def nuclei(seed):
    """Bright blobs (the nuclei) and their instance labels."""
    image = blobs_image(seed)
    _, labels = cv2.connectedComponents((image > 128).astype(np.uint8), connectivity=8)
    return image, labels.astype(np.uint16)


def test_a_lab_folder_with_channels_stacks_and_masks_beside_images(tmp_path):
    folder = tmp_path / "plate"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 4000, (48, 64)).astype(np.uint16)
    truths = {}
    # Two channels, nuclei in the second, named DAPI in the OME metadata, 12-bit data.
    image, truths["cells1"] = nuclei(1)
    dapi = image.astype(np.uint16) * 16
    tifffile.imwrite(folder / "cells1.ome.tif", np.stack([noise, dapi]),
                     ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["GFP", "DAPI"]}})
    # A z-stack whose nuclei are in focus on one slice only; float32 from deconvolution.
    image, truths["cells2"] = nuclei(2)
    stack = np.zeros((3, 48, 64), np.float32)
    stack[1] = image / 255.0 * 7.5
    tifffile.imwrite(folder / "cells2.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    for stem, labels in truths.items():
        tifffile.imwrite(folder / f"{stem}_masks.tif", labels)  # Cellpose's naming
    (folder / "notes.txt").write_text("plate map")
    (folder / "Thumbs.db").write_bytes(b"\0" * 10)

    cfg = write_config(
        tmp_path / "c.yaml", input_dir=str(folder), ground_truth_dir=str(folder),
        ground_truth_pattern="{stem}_masks.tif", exclude=["*_masks.tif"], channel="DAPI",
        intensity_range="image", mask_format="tiff",
        methods={"ws": {"kind": "watershed", "foreground": "bright", "min_size": 8}},
    )
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, "--configfile", cfg)
    rows = pd.read_parquet(work / "results/summary/metrics.parquet").set_index("image_id")
    assert sorted(rows.index) == ["cells1.ome.tif", "cells2.tif"]
    assert (rows["status"] == "ok").all()
    assert rows.loc["cells2.tif", "gt_path"].endswith("cells2_masks.tif")
    assert rows.loc["cells2.tif", "object_f1_50"] == 1.0
    assert rows.loc["cells2.tif", "note"] == ("3 z-slices: maximum projection (set z); one channel: "
                                              "channel 'DAPI' does not apply, the only channel used")
    assert rows.loc["cells2.tif", "intensity_hi"] == pytest.approx(float(stack.max()))
    # Channel set: no note; DAPI is 16 x the 8-bit blobs.
    assert pd.isna(rows.loc["cells1.ome.tif", "note"])
    assert rows.loc["cells1.ome.tif", "intensity_hi"] == dapi.max()
    assert rows.loc["cells1.ome.tif", "object_f1_50"] == 1.0
    for row in rows.itertuples():
        assert row.mask_path.endswith(".tif") and read_label_image(work / row.mask_path).max() > 0
    skipped = pd.read_parquet(work / "results/manifest/skipped.parquet")
    reasons = dict(zip(skipped["path"], skipped["reason"]))
    assert reasons["notes.txt"].startswith("not an image file")
    assert reasons["cells1_masks.tif"] == "excluded by pattern '*_masks.tif'"
    assert "Thumbs.db" in reasons


def test_z_all_gives_each_slice_its_own_row_and_mask(tmp_path):
    folder = tmp_path / "stacks"
    folder.mkdir()
    slices = np.stack([blobs_image(k) for k in range(3)])
    tifffile.imwrite(folder / "s.tif", slices, imagej=True, metadata={"axes": "ZYX"})
    cv2.imwrite(str(folder / "flat.png"), blobs_image(7))
    cfg = write_config(tmp_path / "c.yaml", input_dir=str(folder), z="all",
                       methods={"otsu": {"kind": "threshold"}})
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, "--configfile", cfg)
    rows = pd.read_parquet(work / "results/summary/metrics.parquet").set_index("image_id")
    assert sorted(rows.index) == ["flat.png", "s.tif#z=0", "s.tif#z=1", "s.tif#z=2"]
    assert (rows["status"] == "ok").all() and rows["note"].isna().all()
    from segpipe.methods.threshold import segment_threshold

    for k in range(3):
        mask = read_label_image(work / rows.loc[f"s.tif#z={k}", "mask_path"])
        np.testing.assert_array_equal(mask, segment_threshold(slices[k]).labels)
    assert rows["mask_path"].is_unique
