import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def blobs_image(seed, shape=(48, 64), colour=False):
    """A small image with a few bright discs on a dark, slightly noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = rng.normal(40, 5, shape)
    for _ in range(3):
        cy, cx = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(16, 50)] = rng.normal(200, 5)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if colour:
        image = np.dstack([image, image // 2, 255 - image])
    return image


def encode(image, suffix):
    """Bytes of ``image`` (RGB or grey) encoded in the format of ``suffix``."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def make_image_folder(root):
    """About 8 tiny images: nested folders, one name three times, a JPEG, colour PNGs,
    a 16-bit PNG, a TIFF, and a truncated PNG. Returns the relative paths."""
    files = {
        "a.png": encode(blobs_image(1), ".png"),
        "b.jpg": encode(blobs_image(2, colour=True), ".jpg"),
        "plate1/a.png": encode(blobs_image(3), ".png"),
        "plate1/well 2/c.png": encode(blobs_image(4, colour=True), ".png"),
        "plate2/a.png": encode(blobs_image(5), ".png"),
        "plate2/d16.png": encode(blobs_image(6).astype(np.uint16) * 257, ".png"),
        "plate2/e.tif": encode(blobs_image(7), ".tif"),
        "broken.png": encode(blobs_image(8), ".png")[:60],
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return sorted(files)


def blob_folder(root, n=3):
    """``root/images`` holding ``n`` small PNGs of blobs (``i0.png``...)."""
    images = root / "images"
    images.mkdir()
    for k in range(n):
        (images / f"i{k}.png").write_bytes(encode(blobs_image(k), ".png"))
    return images


def write_config(path, **config):
    path.write_text(yaml.safe_dump(config))
    return path


def run_snakemake(workdir, *args, check=True, env=None):
    """Run the project's workflow in ``workdir``; return the finished process."""
    cmd = [
        sys.executable, "-m", "snakemake",
        "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
        "--cores", "2", "--rerun-incomplete", *map(str, args),
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def assert_same_outputs(a, b):
    """Every file under results/ of two working folders is the same, timing aside."""
    from segpipe.compare import differences

    found = differences(a / "results", b / "results")
    assert not found, found


def add_entries_not_to_segment(root, *, link_to, data=b"x"):
    """What a lab drive holds besides images: a pipe, a dangling link, a link loop, a link
    to a folder (``root/sub``, which must exist), a name that is not UTF-8 and hidden
    entries; plus ``link_to_file.png``, a link to the image ``root/link_to``, which is
    segmented. ``data`` fills the files. Returns the paths the skipped table should list.
    """
    os.mkfifo(root / "pipe.png")
    os.symlink(root / "nowhere.png", root / "dangling.png")
    os.symlink(root / "loop_b", root / "loop_a")
    os.symlink(root / "loop_a", root / "loop_b")
    os.symlink(root / "sub", root / "link_to_folder")
    os.symlink(root / link_to, root / "link_to_file.png")
    (root / os.fsdecode(b"caf\xe9.png")).write_bytes(data)
    (root / ".hidden.png").write_bytes(data)
    (root / ".git").mkdir()
    (root / ".git" / "x.png").write_bytes(data)
    return {"pipe.png", "dangling.png", "loop_a", "loop_b", "link_to_folder", "caf\\xe9.png",
            ".hidden.png", ".git"}
