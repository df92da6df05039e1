"""The ``segpipe`` command: run the workflow on a folder, list methods, report, status.

Snakemake does the work; this command writes the experiment's config into its output
folder (a record of what ran, and the same config for every later command there) and
calls Snakemake with it. Plain ``snakemake`` keeps working as documented in the README.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from segpipe.errors import OutputError
from segpipe.live import run_with_progress
from segpipe.status import (
    RUN_CONFIG,
    listing_summary,
    recorded_config,
    results_dir,
    run_layout,
    status_counts,
    training_lines,
)
from segpipe.workflow_files import workflow_root

# The Snakefile's folder: the copy inside an installed package, or a source checkout.
ROOT = workflow_root()
SNAKEFILE = ROOT / "Snakefile"
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
DEFAULT_CONFIG = ROOT / "config/config.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    try:
        return args.func(args, extra)
    except CommandError as err:
        print(f"segpipe: {err}", file=sys.stderr)
        return 2
    except OutputError as err:
        # The run folder cannot be written (its record, its lock): one line, the path named.
        print(f"segpipe: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`segpipe methods | head`): not an error of ours. Python
        # would print a traceback when it flushes stdout at exit, so stdout goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


class CommandError(Exception):
    """A mistake on the command line or in a config: printed, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segpipe",
        description="Segment folders of images with several methods side by side "
                    "(a Snakemake workflow), and compare them.",
        epilog="Each command has its own --help. Plain `snakemake` works too (README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="segment a folder of images",
        description="Segment INPUT_DIR with the configured methods; results go to --out. "
                    "Arguments after the ones below are passed to Snakemake as they are "
                    "(e.g. --rerun-incomplete, --keep-going).",
    )
    run.add_argument("input_dir", metavar="INPUT_DIR", help="folder of images (searched recursively)")
    run.add_argument("--config", type=Path, metavar="FILE",
                     help="config file; its methods replace the default ones "
                          "(default: config/config.yaml)")
    run.add_argument("--methods", metavar="A,B",
                     help="only these methods of the config, by name; a kind name not in the "
                          "config runs that kind with its defaults (e.g. otsu,watershed)")
    _add_run_options(run)
    run.add_argument("--report", action="store_true",
                     help="also draw the report (results/report/) and pack it into one page, "
                          "results/report.html; `segpipe report` does it later")
    run.add_argument("--force", action="store_true",
                     help="the folder holds results of another config: record this one and "
                          "remove the results it makes stale (they are made again)")
    run.set_defaults(func=cmd_run)

    train = commands.add_parser(
        "train", help="train the config's Mask R-CNN models on your own labels",
        description="Train the models of CONFIG's train section into "
                    "DIR/results/models/NAME/ (model.pt, last.pt, history.parquet, "
                    "model.json); nothing is segmented. Run the same command again after "
                    "a kill and training resumes from last.pt. `segpipe run` with the same "
                    "config trains them too, before the methods that use them. Arguments "
                    "after the ones below are passed to Snakemake as they are.",
    )
    train.add_argument("config", type=Path, metavar="CONFIG", help="config file with a train section")
    train.add_argument("--models", metavar="A,B", help="only these models of the train section")
    _add_run_options(train)
    train.add_argument("--force", action="store_true",
                       help="the folder holds results of another config: record this one")
    train.set_defaults(func=cmd_train, report=False, methods=None)

    methods = commands.add_parser(
        "methods", help="list the method kinds and their settings",
        description="Every method kind with what its labels mean, its input and its "
                    "settings with their defaults.",
    )
    methods.add_argument("kind", nargs="?", help="show only this kind")
    methods.set_defaults(func=cmd_methods)

    status = commands.add_parser(
        "status", help="images listed, done and failed per method",
        description="Counts from the tables of an output folder: images listed, and per "
                    "method the images done, failed and not yet run.",
    )
    status.add_argument("out", nargs="?", type=Path, default=Path("segpipe-out"), metavar="DIR")
    status.set_defaults(func=cmd_status)

    report = commands.add_parser(
        "report", help="draw a run's figures and pack its report into one HTML file",
        description="Draw the figures and leaderboard of the run in DIR from its tables "
                    "(nothing is segmented again) and write report.html into its results "
                    "(its out_dir, default DIR/results), with the config that run recorded.",
    )
    report.add_argument("out", nargs="?", type=Path, default=Path("segpipe-out"), metavar="DIR")
    report.add_argument("-j", "--cores", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="cores to draw with (default: all)")
    report.set_defaults(func=cmd_report)

    clean = commands.add_parser(
        "clean", help="remove a run's results, masks and logs",
        description="Remove the files a segpipe run wrote: in its out_dir (masks, tables, "
                    "summaries, report; default DIR/results), its logs and DIR/.snakemake. "
                    "Every other file stays, and is named; so do the recorded config and "
                    "DIR/resources (downloaded weights).",
    )
    clean.add_argument("out", type=Path, metavar="DIR")
    clean.add_argument("--outside", action="store_true",
                       help="also clean an out_dir outside DIR (only segpipe's files there)")
    clean.set_defaults(func=cmd_clean)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a command that runs the workflow (run, train)."""
    parser.add_argument("--out", type=Path, default=Path("segpipe-out"), metavar="DIR",
                        help="output folder: results/, logs/ and the run's config "
                             "(default: ./segpipe-out)")
    parser.add_argument("-j", "--cores", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="cores to use (default: all)")
    parser.add_argument("--profile", metavar="NAME",
                        help="a profile of profiles/ (e.g. slurm) or a profile folder")
    parser.add_argument("-n", "--dry-run", action="store_true",
                        help="show what would run, run nothing")


def run_config(input_dir: str | os.PathLike, *, config_file: str | os.PathLike | None = None,
               methods: str | None = None) -> dict[str, Any]:
    """The config of a run (:func:`segpipe.config.compose_run_config` with the workflow's
    default config); mistakes become a :class:`CommandError` naming the key or file."""
    from segpipe.config import compose_run_config
    from segpipe.errors import ConfigError, RunConfigError

    try:
        return compose_run_config(DEFAULT_CONFIG, SCHEMA, input_dir=input_dir,
                                  config_file=config_file, methods=methods)
    except (ConfigError, RunConfigError) as err:
        raise CommandError(str(err)) from None


def profile_dir(profile: str) -> Path:
    """The folder of ``--profile NAME``: ``profiles/NAME`` of segpipe, or a path."""
    folder = ROOT / "profiles" / profile
    return folder if folder.is_dir() else Path(profile)


def snakemake_command(out: str | os.PathLike, *, cores: int, profile: str | None = None,
                      dry_run: bool = False, extra: Iterable[str] = (),
                      configfile: str | os.PathLike | None = None,
                      targets: Iterable[str] = ()) -> list[str]:
    """The Snakemake command line of a run in ``out`` (its working directory), with its
    recorded config or ``configfile``, making ``targets`` (default: rule all)."""
    configfile = Path(out) / RUN_CONFIG if configfile is None else configfile
    # Targets before the options: --configfile takes every word that follows it.
    command = [sys.executable, "-m", "snakemake", *targets, "-s", str(SNAKEFILE), "-d",
               str(out), "--cores", str(cores), "--configfile", str(configfile)]
    if profile:
        command += ["--workflow-profile", str(profile_dir(profile))]
    if dry_run:
        command.append("--dry-run")
    return command + list(extra)


def uses_slurm(profile: str | None = None, extra: Iterable[str] = ()) -> bool:
    """Whether a run goes through the SLURM executor: its profile says ``executor: slurm``
    or the Snakemake arguments ask for it.

    >>> uses_slurm(None, ["--executor", "slurm"]), uses_slurm(None, ["-k"])
    (True, False)
    """
    extra = list(extra)
    if "--executor=slurm" in extra or any(
            flag in ("--executor", "-e") and value == "slurm"
            for flag, value in itertools.pairwise(extra)):
        return True
    if profile:
        config = profile_dir(profile) / "config.yaml"
        if config.is_file():
            settings = yaml.safe_load(config.read_text()) or {}
            return settings.get("executor") == "slurm"
    return False


def snakemake_env(profile: str | None = None, extra: Iterable[str] = ()) -> dict[str, str]:
    """The environment of a run's Snakemake process.

    Snakemake's SLURM plugin, once installed, asks ``scontrol show config`` for a setting
    when Snakemake starts, whatever the executor. Where the SLURM client is installed but
    no controller answers (a workstation, a node whose cluster is down), that waits 9 s on
    every start, longer than a small run. A local run has no use for the answer, so its
    SLURM client is pointed at an empty config and fails at once; runs through the SLURM
    executor, and a ``SLURM_CONF`` the user set, are left alone.
    """
    env = dict(os.environ)
    if not uses_slurm(profile, extra) and "SLURM_CONF" not in env:
        env["SLURM_CONF"] = os.devnull
    return env


def cmd_run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from segpipe.runfolder import FolderBusy, lock_folder

    config = run_config(args.input_dir, config_file=args.config, methods=args.methods)
    if args.report:
        config["report"] = True
    out = args.out.resolve()
    try:
        # The folder's lock comes before any other file is written there, and its holder
        # (this process, then Snakemake) keeps it to the end of the run.
        with lock_folder(out, what="run") as lock:
            return _run_locked(args, extra, config, out, lock)
    except FolderBusy as err:
        raise CommandError(str(err)) from None


def cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from segpipe.config import load_config_file
    from segpipe.layout import Layout
    from segpipe.runfolder import FolderBusy, lock_folder

    try:
        user = load_config_file(args.config) or {}
    except (OSError, yaml.YAMLError) as err:
        raise CommandError(f"cannot read {args.config}: {err}") from None
    train = user.get("train") if isinstance(user, dict) else None
    if not isinstance(train, dict) or not train:
        raise CommandError(f"{args.config} has no train section (train: {{NAME: {{...}}}})")
    names = sorted(train)
    if args.models:
        chosen = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise CommandError(f"--models: {', '.join(unknown)} not in the train section "
                               f"({', '.join(names)})")
        names = chosen
    # Nothing is segmented: the input folder only has to pass the checks, so a config
    # without one takes the first model's.
    first = train[names[0]]
    input_dir = user.get("input_dir") or (first.get("input_dir") if isinstance(first, dict) else None)
    config = run_config(input_dir or ".", config_file=args.config)
    layout = Layout(config.get("out_dir", "results"))
    targets = [f"{layout.model(name)}/{file}" for name in names
               for file in ("model.pt", "history.parquet", "model.json")]
    out = args.out.resolve()
    try:
        with lock_folder(out, what="train") as lock:
            return _run_locked(args, extra, config, out, lock, summary=_trained,
                               targets=targets)
    except FolderBusy as err:
        raise CommandError(str(err)) from None


def _trained(out: Path, settings: dict[str, Any]) -> str:
    """What `segpipe train` prints at the end: each model's state."""
    return "\n".join(training_lines(out))


def _run_locked(args: argparse.Namespace, extra: Sequence[str], config: dict[str, Any],
                out: Path, lock: int, *,
                summary: Callable[[Path, dict[str, Any]], str] | None = None,
                targets: Sequence[str] = ()) -> int:
    import tempfile

    from segpipe.config import load_schema, resolve_config
    from segpipe.runfolder import (
        config_changes,
        describe,
        holds_results,
        record_config,
        remove_stale,
    )

    schema = load_schema(SCHEMA)
    previous = recorded_config(out)
    if previous and holds_results(run_layout(out)):
        change = config_changes(previous, config, schema)
        if change.matters and not args.force:
            raise CommandError(
                f"{out} holds the results of another config (it differs in {describe(change)}); "
                "use another --out, or add --force to record the new config and remove "
                "the results it makes stale")
        if change.matters:
            if args.dry_run:
                print(f"segpipe: --force would record the new config ({describe(change)}) and "
                      "remove the results it makes stale", file=sys.stderr)
            else:
                removal = remove_stale(run_layout(out), change)
                stale = "every method" if change.everything else ", ".join(change.methods) or "none"
                print(f"segpipe: --force: recorded the new config ({describe(change)}); removed "
                      f"{removal.removed:,} stale files (methods: {stale}"
                      f"{'; summary' if change.summary else ''})", file=sys.stderr)
                if removal.foreign:
                    print(f"segpipe: {removal.foreign_note()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="segpipe-dry-run-") as scratch:
        if args.dry_run:
            # A dry run leaves the record alone: Snakemake reads the new config elsewhere.
            configfile = Path(scratch) / RUN_CONFIG
            configfile.write_text(yaml.safe_dump(config, sort_keys=False))
        else:
            configfile = out / RUN_CONFIG
            record_config(out, config)
        command = snakemake_command(out, cores=args.cores, profile=args.profile,
                                    dry_run=args.dry_run, extra=extra, configfile=configfile,
                                    targets=targets)
        env = snakemake_env(args.profile, extra)
        if args.dry_run:
            print(listing_summary(config), file=sys.stderr)
            return subprocess.call(command, env=env, pass_fds=(lock,))
    if any((out / ".snakemake" / "locks").glob("*.lock")):
        # Snakemake's lock, while this command holds the folder's: every segpipe command
        # that runs Snakemake here holds that lock as long as Snakemake lives, so this one
        # was left by a killed run. Resuming needs no `--unlock` by hand.
        print("segpipe: removing the lock a killed run left in .snakemake/locks",
              file=sys.stderr)
        subprocess.run([*command, "--unlock"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    if sys.stderr.isatty() and not {"-q", "--quiet", "--verbose"} & set(extra):
        # The progress line instead of a block per job; warnings and errors still show.
        command += ["--quiet", "rules", "progress", "host"]
    code = run_with_progress(command, out, env=env, pass_fds=(lock,))
    if code == 0:
        from segpipe.report import run_summary

        settings = resolve_config(config, schema)  # defaults filled in
        if summary is not None:
            print(summary(out, settings))
            return code
        page = results_dir(out) / "report.html"
        drawn = settings["report"] and page.is_file()
        print(run_summary(out, results_dir(out), metric=settings["primary_metric"],
                          report_page=page if drawn else None))
    else:
        print(f"segpipe: the run stopped (see above; job logs in {out / 'logs'}); "
              f"`segpipe status {out}` shows what is done", file=sys.stderr)
    return code


def cmd_methods(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from segpipe.config import load_schema, method_defaults
    from segpipe.methods import REGISTRY

    schema = load_schema(SCHEMA)
    kinds = [args.kind] if args.kind else sorted(REGISTRY)
    for kind in kinds:
        if kind not in REGISTRY:
            raise CommandError(f"unknown kind {kind!r}; known: {', '.join(sorted(REGISTRY))}")
    lines = []
    for kind in kinds:
        spec = REGISTRY[kind]
        block = schema["$defs"][kind]
        runner = "batched on a GPU" if spec.runner == "batch" else "per image, one core"
        lines.append(f"{kind}: {spec.summary}")
        lines.append(f"  labels: {spec.labels}; input: {spec.colour}; runs {runner}")
        defaults = method_defaults(schema, kind)
        for key, prop in block["properties"].items():
            if key == "kind":
                continue
            if "$ref" in prop:
                shared = schema["$defs"][prop["$ref"].rsplit("/", 1)[-1]]
                prop = {**shared, **{k: v for k, v in prop.items() if k != "$ref"}}
            default = f" (default {defaults[key]!r})" if key in defaults else ""
            words = " ".join(str(prop.get("description", "")).split())
            choices = f" [{', '.join(map(str, prop['enum']))}]" if "enum" in prop else ""
            lines.append(f"  {key}{choices}{default}: {words}")
        lines.append("")
    print("\n".join(lines).rstrip())
    return 0


def cmd_clean(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from segpipe.cleanup import remove_run_outputs
    from segpipe.runfolder import LOCK_FILE, FolderBusy, lock_folder

    out = args.out.resolve()
    if not (out / RUN_CONFIG).exists():
        raise CommandError(f"{out} has no {RUN_CONFIG}: not the --out of a segpipe run, "
                           "nothing removed")
    out_dir = results_dir(out).resolve()
    inside = out_dir != out and out in out_dir.parents
    if not inside and not args.outside:
        raise CommandError(
            f"the results of {out} are in {out_dir}, not inside it: nothing removed. "
            f"`segpipe clean --outside {args.out}` removes the files segpipe wrote there "
            "too, and only those")
    try:
        with lock_folder(out, what="clean"):
            removal = remove_run_outputs(out, out_dir, keep_out_dir=not inside)
    except FolderBusy as err:
        raise CommandError(f"{err}; nothing removed") from None
    # The run folder's own files are not segpipe's outputs to clean, nor news.
    kept = {out / RUN_CONFIG, out / LOCK_FILE}
    removal.foreign = [f for f in removal.foreign
                       if Path(f) not in kept and out / "resources" not in Path(f).parents]
    print(f"removed {removal.removed:,} files segpipe wrote in {out_dir}, and the logs and "
          f"Snakemake records of {out} (its config and resources/ are kept)")
    if removal.foreign:
        print(removal.foreign_note(limit=20))
    if removal.failed:
        print(f"could not remove {len(removal.failed):,} files, e.g. {removal.failed[0]}",
              file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if not args.out.is_dir():
        raise CommandError(f"{args.out} is not a folder (give the --out of a run)")
    listed, rows = status_counts(args.out)
    print(f"{args.out}: " + ("not listed yet" if listed is None else f"{listed:,} images listed"))
    for line in training_lines(args.out):
        print(line)
    if not rows:
        print("no method has run")
        return 0
    width = max(len(r["method"]) for r in rows)
    print(f"{'method':<{width}}  {'done':>9}  {'failed':>9}  {'to do':>9}")
    for r in rows:
        todo = "?" if r["missing"] is None else f"{r['missing']:,}"
        print(f"{r['method']:<{width}}  {r['ok']:>9,}  {r['error']:>9,}  {todo:>9}")
    return 0


def cmd_report(args: argparse.Namespace, extra: Sequence[str]) -> int:
    out = args.out.resolve()
    if not (out / RUN_CONFIG).exists():
        raise CommandError(f"{out} has no {RUN_CONFIG}: not the --out of a segpipe run")
    from segpipe.runfolder import FolderBusy, lock_folder

    page = results_dir(out) / "report.html"
    # The report is drawn only when asked for (config key report): the run's own target
    # with the switch on draws the figures from the tables and packs report.html.
    try:
        with lock_folder(out, what="report") as lock:
            code = subprocess.call(snakemake_command(out, cores=args.cores,
                                                     extra=["--config", "report=true"]),
                                   env=snakemake_env(), pass_fds=(lock,))
    except FolderBusy as err:
        raise CommandError(str(err)) from None
    if code == 0:
        print(f"report: {page}")
    return code


if __name__ == "__main__":
    sys.exit(main())
