"""Build hook: the wheel carries the workflow (everything else is in pyproject.toml).

The repository keeps the Snakefile, workflow/, config/, envs/ and profiles/ at its top,
where plain ``snakemake`` from a clone finds them. A wheel has no top, so ``build_py``
copies them into the built package as ``segpipe/_workflow/`` with the same layout, where
``segpipe.workflow_files.workflow_root`` finds them. MANIFEST.in puts them in the sdist,
so that a wheel built from the sdist carries them too.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# What the workflow reads at run time, relative to the repository root (MANIFEST.in too).
WORKFLOW_FILES = ["Snakefile"]
WORKFLOW_FOLDERS = ["workflow", "config", "envs", "profiles"]


class build_py_with_workflow(build_py):
    """``build_py``, then a copy of the workflow into ``segpipe/_workflow``."""

    def run(self):
        super().run()
        # An editable install imports src/segpipe, whose checkout is the workflow's folder.
        if self.editable_mode:
            return
        root = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "segpipe" / "_workflow"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in WORKFLOW_FILES:
            shutil.copy2(root / name, target / name)
        for name in WORKFLOW_FOLDERS:
            shutil.copytree(root / name, target / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": build_py_with_workflow})
