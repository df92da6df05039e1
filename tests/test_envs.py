"""Pinned software: requirements.lock, the conda environments and the container agree."""

import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement

from conftest import ROOT

# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"opencv": "opencv-python-headless", "pytorch": "torch"}
# needed by the Snakemake driver process only, never inside a rule's environment
DRIVER_ONLY = {"snakemake"}


def pyproject_requirements(extras=()):
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = data["project"]["dependencies"]
    for extra in extras:
        listed = listed + data["project"]["optional-dependencies"][extra]
    reqs = [Requirement(r) for r in listed]
    return {r.name.lower(): str(r.specifier) for r in reqs}


def locked():
    """Package name (lower case) -> exact version, from requirements.lock."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def env_requirements(path):
    deps = yaml.safe_load(path.read_text())["dependencies"]
    out = {}
    for dep in deps:
        name, _, spec = dep.partition(" ")
        out[CONDA_TO_PYPI.get(name, name)] = spec.replace(" ", "")
    return out


def test_every_env_package_is_pinned_to_the_lock():
    required, pins = pyproject_requirements(), locked()
    for path in sorted((ROOT / "envs").glob("*.yaml")):
        for name, spec in env_requirements(path).items():
            if name == "python":
                assert spec == "=3.11", path.name
                continue
            assert name in required, f"{path.name}: {name} is not in pyproject.toml"
            version = pins[name.lower()]
            if name == "opencv-python-headless":  # conda-forge has no wheel build number
                version = ".".join(version.split(".")[:3])
            assert spec == f"=={version}", f"{path.name}: {name} {spec}, the lock has {version}"


def test_the_lock_pins_every_requirement_within_its_range():
    pins = locked()
    for name, spec in pyproject_requirements(extras=("test", "slurm")).items():
        assert name in pins, f"requirements.lock has no {name}"
        assert Requirement(f"{name}{spec}").specifier.contains(pins[name]), (name, spec, pins[name])


def test_the_container_installs_the_lock():
    text = (ROOT / "containers/Dockerfile").read_text()
    assert "COPY requirements.lock" in text and "-c requirements.lock" in text
    assert "FROM python:3.11" in text


def test_the_container_setting_reaches_every_job(tmp_path):
    def dry_run(*extra):
        return subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
             "--cores", "1", "-n", "--software-deployment-method", "apptainer", *extra],
            capture_output=True, text=True, check=False,
        )

    assert dry_run().returncode == 0  # no image: nothing asks for apptainer
    if shutil.which("apptainer") or shutil.which("singularity"):
        pytest.skip("apptainer is installed here: its absence cannot show the image is used")
    with_image = dry_run("--config", "container=docker://segpipe:0.1.0")
    # with an image every job would run in it, so Snakemake now needs apptainer
    assert with_image.returncode != 0 and "apptainer" in with_image.stderr + with_image.stdout


def test_every_pyproject_package_is_in_some_env():
    covered = set()
    for path in (ROOT / "envs").glob("*.yaml"):
        covered |= set(env_requirements(path))
    missing = set(pyproject_requirements()) - covered - DRIVER_ONLY
    assert not missing, f"no envs/*.yaml provides {sorted(missing)}"


def test_rules_name_existing_env_files():
    for smk in (ROOT / "workflow/rules").glob("*.smk"):
        for line in smk.read_text().splitlines():
            if line.strip().startswith('"../../envs/'):
                assert (ROOT / "workflow/rules" / line.strip().strip('",')).exists(), line
