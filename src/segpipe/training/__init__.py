"""Training Mask R-CNN on the user's own labels (the config's ``train`` section).

- :mod:`segpipe.training.data`: which images train and which validate (a seeded hash of
  the image id), their labels (instance masks or a COCO JSON), and the checks that name
  a bad file before any training step runs.
- :mod:`segpipe.training.augment`: random crops at native resolution, flips, 90-degree
  rotations, scale and intensity jitter, each drawn from the seed, the epoch and the
  image, so that a crop does not depend on which DataLoader worker made it.
- :mod:`segpipe.training.loop`: the epochs, validation (loss and the project's own
  :class:`segpipe.evaluation.MaskAP`), checkpoints and resuming after a kill.

The network itself (torchvision's Mask R-CNN, or one on a ResNet-18/34 FPN backbone)
and the checkpoint format a segment job loads are in :mod:`segpipe.maskrcnn.model`.

Nothing here imports torch at import time, except :mod:`segpipe.training.loop`.
"""
