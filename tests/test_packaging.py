"""The workflow ships inside the package: a wheel installed apart from the source tree runs
a folder from anywhere, reading its workflow from the install and writing nothing there."""

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from segpipe import workflow_files
from segpipe.workflow_files import workflow_root

from conftest import ROOT, blobs_image, encode

# What the workflow reads at run time, relative to its root: the sdist and the wheel
# (under segpipe/_workflow/) carry these, and every other file of those folders.
WORKFLOW = [
    "Snakefile",
    "config/config.yaml",
    "workflow/schemas/config.schema.yaml",
    "workflow/rules/common.smk",
    "workflow/scripts/segment_shard.py",
    "envs/classical.yaml",
    "envs/maskrcnn.yaml",
    "profiles/default/config.yaml",
    "profiles/slurm/config.yaml",
]


def checkout_workflow():
    """The Snakefile and every file under the checkout's workflow/, config/, envs/ and
    profiles/ (rules, scripts, schema, report captions ...), relative to the root."""
    names = {"Snakefile"}
    for folder in ("workflow", "config", "envs", "profiles"):
        names |= {
            str(path.relative_to(ROOT)) for path in (ROOT / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
    return names


def test_a_source_checkout_is_its_own_workflow_root():
    assert workflow_root() == ROOT


def test_the_copy_inside_the_package_comes_first(tmp_path, monkeypatch):
    (tmp_path / "_workflow").mkdir()
    (tmp_path / "_workflow/Snakefile").write_text("")
    monkeypatch.setattr(workflow_files.resources, "files", lambda package: tmp_path)
    assert workflow_root() == tmp_path / "_workflow"


def test_no_workflow_anywhere_is_an_error_naming_both_places(tmp_path, monkeypatch):
    monkeypatch.setattr(workflow_files.resources, "files", lambda package: tmp_path)
    monkeypatch.setattr(workflow_files, "__file__", str(tmp_path / "site/segpipe/x.py"))
    with pytest.raises(FileNotFoundError, match=r"_workflow.*source checkout"):
        workflow_root()


def _files_under(folder):
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
    }


@pytest.mark.e2e
def test_an_installed_wheel_runs_a_folder_from_anywhere(tmp_path):
    build = tmp_path / "build"
    # The sdist first, then the wheel from it: a wheel built from the sdist carries the
    # workflow only if the sdist does, and the repository gets no build/ folder.
    subprocess.run(
        [sys.executable, "-c",
         "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])",
         build], cwd=ROOT, check=True, capture_output=True)
    (sdist,) = build.glob("segpipe-*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    shipped = checkout_workflow()
    assert set(WORKFLOW) <= shipped
    assert shipped <= members, shipped - members
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", build, sdist], cwd=build, check=True, capture_output=True)
    (wheel,) = build.glob("segpipe-*.whl")
    members = set(zipfile.ZipFile(wheel).namelist())
    packaged = {f"segpipe/_workflow/{name}" for name in shipped}
    assert packaged <= members, packaged - members

    # A venv of its own holding the wheel; the project's .venv lends only the
    # dependencies, through a .pth line. A path a .pth adds is not scanned for .pth files,
    # so the editable install of the source tree (a .pth there) stays out of sight. The
    # line is written after the install, so pip never sees the editable segpipe either.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin/python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "-q", wheel], check=True, capture_output=True)
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip())
    (site / "segpipe-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join(
        [str(venv / "bin")]
        + [p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != Path(sys.prefix, "bin")])
    found = subprocess.run(
        [python, "-c", "import segpipe; print(segpipe.__file__)"],
        check=True, capture_output=True, text=True, env=env, cwd=tmp_path).stdout.strip()
    assert Path(found) == site / "segpipe/__init__.py"
    installed = site / "segpipe"
    before = _files_under(installed)

    images = tmp_path / "images"
    images.mkdir()
    for seed in range(3):
        (images / f"img{seed}.png").write_bytes(encode(blobs_image(seed), ".png"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [venv / "bin/segpipe", "run", images, "--methods", "otsu", "--out", "X", "-j", "2"],
        capture_output=True, text=True, env=env, cwd=elsewhere, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Snakemake read the installed copy's config and profile, not the checkout's.
    assert f"{installed}/_workflow/config/config.yaml" in proc.stderr
    assert f"{installed}/_workflow/profiles/default" in proc.stderr
    for checkout in ("Snakefile", "src", "config", "workflow", "profiles"):
        assert str(ROOT / checkout) not in proc.stdout + proc.stderr

    out = elsewhere / "X"
    metrics = pd.read_parquet(out / "results/summary/metrics.parquet")
    assert sorted(metrics["image_id"]) == ["img0.png", "img1.png", "img2.png"]
    assert (metrics["status"] == "ok").all()
    for mask in metrics["mask_path"]:
        assert (out / mask).is_file(), mask
    assert (out / ".snakemake").is_dir()
    # Everything the run wrote is in X: the install (maybe read-only) is untouched.
    assert _files_under(installed) == before
    assert sorted(p.name for p in elsewhere.iterdir()) == ["X"]
