"""Where the workflow is: the Snakefile, ``workflow/``, ``config/``, ``envs/``, ``profiles/``.

A wheel (or ``pip install .``) carries a copy of them inside the package, as
``segpipe/_workflow/`` (setup.py copies the repository's top-level files there at build
time). A source checkout, and an editable install of one, has them at the top of the
repository, two folders above this file. The installed copy is only read: Snakemake
writes ``.snakemake/``, logs, results and ``resources/`` in its working directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# The folder of the package that holds the workflow's copy in a wheel (setup.py's too).
PACKAGED = "_workflow"


def workflow_root() -> Path:
    """The folder that holds the ``Snakefile`` of this segpipe, with ``workflow/``,
    ``config/``, ``envs/`` and ``profiles/`` beside it.

    Returns
    -------
    Path
        ``segpipe/_workflow`` of an installed package when it is there, else the root of
        the source checkout this package is imported from.

    Raises
    ------
    FileNotFoundError
        When neither holds a Snakefile (a wheel built without its workflow).

    Examples
    --------
    >>> (workflow_root() / "workflow/schemas/config.schema.yaml").is_file()
    True
    """
    packaged = resources.files("segpipe") / PACKAGED
    # Snakemake needs real files; a package imported from a zip has none to give it.
    if isinstance(packaged, Path) and (packaged / "Snakefile").is_file():
        return packaged
    here = Path(__file__).resolve()
    checkout = here.parents[2]
    if here.parent == checkout / "src" / "segpipe" and (checkout / "Snakefile").is_file():
        return checkout
    raise FileNotFoundError(
        f"segpipe's workflow is neither in {packaged} (an installed package) nor in "
        f"{checkout} (a source checkout): reinstall segpipe from its wheel or sdist")
