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
