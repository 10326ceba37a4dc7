"""The everyday front door (`molgen-grid`, `sbatch/run.sh`): flags for people, a Hydra sweep underneath.

Each action is the experiment's sweep with the launcher told what to do, so `--status`, `--dry-run` and a run
see exactly the same cells as `python -m molgen_grid -m experiment=NAME ...`. The study is the conformer
benchmark shipped with the package unless `--config-dir DIR` (or MOLGEN_GRID_CONF) names another one.
"""
from __future__ import annotations

import argparse
import sys

from molgen_grid.grid.store import safe_component
from molgen_grid.errors import InputError, front_door

EPILOG = """\
examples:
  molgen-grid                                  run every cell of the default experiment that is not done
  molgen-grid --config-dir my_study --status   another study: its own config tree (docs/tasks.md)
  molgen-grid --status                         one row per cell: state, job id, age, reason; the time left
  molgen-grid --status --json                  the same, for machines
  molgen-grid --dry-run kv_cache=static        the plan: what would run and why, and about how long it takes
  molgen-grid --force 'gpu=local,...'          rerun one cell (names as --status prints them)
  molgen-grid --accept                         keep every stale cell's result: record what changed as accepted
  molgen-grid --limit 2 attention=eager,sdpa   test mode: 2 items per cell, kept apart from full runs
  molgen-grid gpu=h100,a100 --wait             submit to Slurm (one job array per partition), follow to the end
  molgen-grid --status --wait                  follow what is queued or running, launching nothing
  molgen-grid --report --compare kv_cache=static:dynamic   tables, speed-ups, plots under artifacts/
Overrides use Hydra's grammar (a=x,y  b=range(1,4)  c=glob(*)) and are merged over the experiment's grid.
Put overrides before --force and --accept: every word after them is taken as a cell name."""


#: Flags followed by cell names.
NAMING_FLAGS = ("--force", "--accept")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="molgen-grid", allow_abbrev=False,
        description="Run, resume and inspect a grid of experiments, here or on Slurm (by default the conformer "
                    "generation benchmark shipped with molgen_grid).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config-dir", metavar="DIR", help="the study's config tree (default: the benchmark's; "
                                                        "MOLGEN_GRID_CONF sets another default)")
    p.add_argument("--config-name", metavar="NAME", help="its primary config (default: config)")
    p.add_argument("--experiment", help="a named grid: experiment/NAME.yaml of the study (default: default)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true", help="show every cell of the grid and its state")
    action.add_argument("--dry-run", action="store_true", help="show what would run and why; launch nothing")
    action.add_argument("--report", action="store_true",
                        help="tables, speed-ups and plots of the done cells under artifacts/<experiment>/")
    action.add_argument("--accept", nargs="*", metavar="CELL",
                        help="record the current fingerprint of these stale cells (no name: all) without rerunning "
                             "them; the former summary is kept in the cell's history/")
    p.add_argument("--compare", action="append", default=[], metavar="AXIS=A:B",
                   help="with --report: matched pairs that differ only in AXIS (repeatable)")
    p.add_argument("--heatmap", metavar="X,Y", help="with --report: the two settings of the heatmap")
    p.add_argument("--json", action="store_true", help="with --status: print JSON")
    p.add_argument("--force", nargs="*", metavar="CELL", help="rerun these cells even if done (no name: all)")
    p.add_argument("--wait", action="store_true",
                   help="follow every queued or running cell of the grid to its end, whoever submitted it: after a "
                        "run (which first launches what is not done), or after --status (which launches nothing)")
    p.add_argument("--limit", type=int, metavar="N",
                   help="test mode: N items per cell (sets the study's grid.limit_key; results kept apart)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. kv_cache=static,dynamic")
    return p


def hydra_list(values: list[str]) -> str:
    """A list of quoted strings in Hydra's override grammar (cell names hold `,` and `=`)."""
    return "[" + ",".join(f"'{v}'" for v in values) + "]"


def hydra_argv(args: argparse.Namespace) -> list[str]:
    """The `python -m molgen_grid -m ...` command line that carries out these flags."""
    action = "status" if args.status else "dry_run" if args.dry_run else "report" if args.report else \
        "accept" if args.accept is not None else "run"
    argv = ["molgen_grid", "--multirun", f"hydra.launcher.action={action}"]
    if args.experiment is not None:
        argv.append(f"experiment={safe_component(args.experiment, 'experiment name')}")
    if args.json:
        argv.append("hydra.launcher.json=true")
    if args.wait:
        argv.append("hydra.launcher.wait=true")
    if args.compare:
        argv.append(f"hydra.launcher.compare={hydra_list(args.compare)}")
    if args.heatmap:
        argv.append(f"hydra.launcher.heatmap={hydra_list(args.heatmap.split(','))}")
    if args.force is not None:
        names = args.force or ["*"]
        argv.append(f"hydra.launcher.force={hydra_list(names)}")
    if args.accept:
        argv.append(f"hydra.launcher.accept={hydra_list(args.accept)}")
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit {args.limit}: give a positive number of items per cell")
        argv.append(f"hydra.launcher.limit={args.limit}")
    return argv + args.overrides


def split_names(argv: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Take the cell names that follow --force and --accept out of the command line.

    Cell names look like overrides (`gpu=local,...`), so argparse alone cannot tell them apart: every word after
    such a flag up to the next flag is a cell name.
    """
    rest: list[str] = []
    names: dict[str, list[str]] = {}
    taking: str | None = None
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if flag in NAMING_FLAGS:
            taking = flag
            names.setdefault(flag, [])
            if eq:
                names[flag].append(value)
        elif taking and not arg.startswith("-"):
            names[taking].append(arg)
        else:
            taking = None
            rest.append(arg)
    return rest, names


def main(argv: list[str] | None = None) -> None:
    front_door(lambda: run(sys.argv[1:] if argv is None else argv))


def run(argv: list[str]) -> None:
    rest, names = split_names(argv)
    args = parser().parse_intermixed_args(rest + (["--accept"] if "--accept" in names else []))
    args.force, args.accept = names.get("--force"), names.get("--accept")
    if args.json and not args.status:
        parser().error("--json goes with --status")
    if args.wait and (args.json or args.dry_run or args.report):
        raise InputError("--wait goes with a run (launch, then follow) or with --status (follow, launching "
                         "nothing), not with --json, --dry-run or --report")
    if (args.compare or args.heatmap) and not args.report:
        parser().error("--compare and --heatmap go with --report")
    argv = hydra_argv(args)
    from molgen_grid.__main__ import CONF_DIR
    from molgen_grid.grid.front_door import config_tree, run_sweep

    tree = [*(["--config-dir", args.config_dir] if args.config_dir else []),
            *(["--config-name", args.config_name] if args.config_name else [])]
    _, conf_dir, config_name = config_tree(["molgen-grid", *tree], CONF_DIR)
    run_sweep(conf_dir, config_name, argv)


if __name__ == "__main__":
    main()
