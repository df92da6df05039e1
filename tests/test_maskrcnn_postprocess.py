"""Batched mask pasting against torchvision's per-instance paste_masks_in_image (CPU)."""

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from segpipe import rle
from segpipe.maskrcnn.postprocess import paste_batch, runs_by_instance


def detections(seed, sizes, n):
    """Random mask probabilities and boxes inside each image, some on its borders."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for h, w in sizes:
        x0 = torch.rand(n, generator=gen) * w * 1.1 - 0.05 * w
        y0 = torch.rand(n, generator=gen) * h * 1.1 - 0.05 * h
        bw = torch.rand(n, generator=gen) * w * 0.5
        bh = torch.rand(n, generator=gen) * h * 0.5
        boxes = torch.stack([x0, y0, x0 + bw, y0 + bh], 1)
        # the model clips its boxes to the image
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        boxes[0] = torch.tensor([0.0, 0.0, w, h])  # the whole image
        boxes[1] = torch.tensor([w / 2, h / 2, w / 2, h / 2])  # a point
        probs = torch.sigmoid(torch.randn(n, 28, 28, generator=gen) * 3)
        out.append((probs, boxes))
    return out


def run(per_image, sizes, **kwargs):
    masks = torch.cat([p for p, _ in per_image])
    boxes = torch.cat([b for _, b in per_image])
    counts = [len(p) for p, _ in per_image]
    image_index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    rank = torch.cat([torch.arange(n) for n in counts])
    return paste_batch(masks, boxes, image_index, rank, sizes, threshold=0.5, **kwargs), counts


def unpack(pasted, counts, sizes):
    """Per image: label image and each instance's mask decoded from its runs."""
    inst, pos = pasted.run_instance.numpy(), pasted.run_position.numpy()
    start, end = runs_by_instance(inst, len(pasted.areas))
    first, out = 0, []
    for (h, w), offset, n in zip(sizes, pasted.offsets, counts):
        labels = pasted.labels[offset : offset + h * w].reshape(h, w).numpy()
        masks = [
            rle.decode(rle.compress([rle.counts_from_boundaries(pos[start[g]:end[g]], h, w)], h, w)[0])
            for g in range(first, first + n)
        ]
        out.append((labels, masks, pasted.areas[first : first + n].numpy()))
        first += n
    return out


SIZES = [(48, 64), (71, 33), (120, 160)]


@pytest.fixture(scope="module", params=["batched", "per_instance"])
def pasted(request):
    per_image = detections(0, SIZES, 25)
    result, counts = run(per_image, SIZES, summarise=request.param)
    return per_image, unpack(result, counts, SIZES)


def test_each_instance_agrees_with_torchvision_paste(pasted):
    per_image, mine = pasted
    for (probs, boxes), (h, w), (_, masks, areas) in zip(per_image, SIZES, mine):
        theirs = paste_masks_in_image(probs[:, None], boxes, (h, w))[:, 0].numpy() > 0.5
        for k, (a, b) in enumerate(zip(masks, theirs)):
            union = (a | b).sum()
            iou = (a & b).sum() / union if union else 1.0
            assert iou >= 0.99, (h, w, k, iou)
            assert areas[k] == a.sum()


def test_label_image_is_the_score_ordered_union_of_the_masks(pasted):
    _, mine = pasted
    for labels, masks, _ in mine:
        expected = np.zeros(labels.shape, np.int32)
        for k in range(len(masks) - 1, -1, -1):  # higher scores (lower ranks) painted last
            expected[masks[k]] = k + 1
        np.testing.assert_array_equal(labels, expected)
        assert labels.max() <= len(masks)


@pytest.mark.parametrize("other", [{"budget": 500}, {"summarise": "per_instance"}],
                         ids=["many chunks", "per instance"])
def test_chunking_and_the_summary_path_do_not_change_results(other):
    per_image = detections(1, SIZES, 12)
    big, _counts = run(per_image, SIZES, summarise="batched")
    small, _ = run(per_image, SIZES, **{"summarise": "batched", **other})
    torch.testing.assert_close(big.labels, small.labels)
    torch.testing.assert_close(big.areas, small.areas)
    for a, b in ((big, small), (small, big)):
        a_start, a_end = runs_by_instance(a.run_instance.numpy(), len(a.areas))
        b_start, b_end = runs_by_instance(b.run_instance.numpy(), len(b.areas))
        for i in range(len(a.areas)):
            np.testing.assert_array_equal(a.run_position[a_start[i]:a_end[i]],
                                          b.run_position[b_start[i]:b_end[i]])


def test_no_detections_give_empty_label_images():
    sizes = [(5, 7), (3, 2)]
    pasted, _counts = run([(torch.zeros(0, 28, 28), torch.zeros(0, 4))] * 2, sizes)
    assert pasted.labels.shape == (5 * 7 + 3 * 2 + 1,) and int(pasted.labels.abs().sum()) == 0
    assert len(pasted.areas) == 0 and len(pasted.run_position) == 0
