"""The conda environment files must ask for what pyproject.toml asks for."""

import tomllib

import yaml
from packaging.requirements import Requirement

from conftest import ROOT

# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"opencv": "opencv-python-headless", "pytorch": "torch"}
# needed by the Snakemake driver process only, never inside a rule's environment
DRIVER_ONLY = {"snakemake"}


def pyproject_requirements():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {r.name.lower(): str(r.specifier) for r in reqs}


def env_requirements(path):
    deps = yaml.safe_load(path.read_text())["dependencies"]
    out = {}
    for dep in deps:
        name, _, spec = dep.partition(" ")
        out[CONDA_TO_PYPI.get(name, name)] = spec.replace(" ", "")
    return out


def test_every_env_package_matches_pyproject():
    required = pyproject_requirements()
    for path in sorted((ROOT / "envs").glob("*.yaml")):
        for name, spec in env_requirements(path).items():
            if name == "python":
                continue
            assert name in required, f"{path.name}: {name} is not in pyproject.toml"
            assert set(spec.split(",")) == set(required[name].split(",")), (
                f"{path.name}: {name} {spec} but pyproject.toml says {required[name]}"
            )


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
