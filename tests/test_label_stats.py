import numpy as np

from segpipe.label_stats import label_stats


def test_touching_labels_are_one_object_and_diagonals_connect():
    labels = np.zeros((6, 6), np.uint16)
    labels[0:2, 0:2] = 1
    labels[0:2, 2:4] = 300  # touches label 1: same object
    labels[2, 4] = 2  # touches label 300 only diagonally: still the same object
    labels[5, 0] = 1  # a second piece of label 1, apart
    stats = label_stats(labels)
    assert stats == {"n_labels": 3, "n_objects": 2, "foreground_fraction": 10 / 36}


def test_empty_mask():
    assert label_stats(np.zeros((3, 3), np.uint8)) == {
        "n_labels": 0, "n_objects": 0, "foreground_fraction": 0.0,
    }


def test_binary_masks_count_as_any_label_image_does():
    # 0/1 masks take a shortcut (a nonzero count); the same mask with its foreground
    # relabelled 2 goes through the histogram, and a uint16 copy through bincount.
    from skimage.measure import label

    rng = np.random.default_rng(3)
    for fraction in (0.0, 0.02, 0.5, 1.0):
        mask = (rng.random((37, 53)) < fraction).astype(np.uint8)
        expected = {
            "n_labels": int(mask.any()),
            "n_objects": int(label(mask, connectivity=2).max()),
            "foreground_fraction": mask.sum() / mask.size,
        }
        assert label_stats(mask) == expected
        assert label_stats(mask * 2) == expected
        assert label_stats(mask.astype(np.uint16)) == expected
        assert label_stats(mask, "classes")["n_objects"] is None
