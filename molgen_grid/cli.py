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
  molgen-grid --status                         counts per state and place, the cells that need attention (failed
                                               first, with the reason), the time left; a grid of at most 50 cells
                                               lists every cell
  molgen-grid --status --all                   every cell: state, job id, age, reason
  molgen-grid --status --json                  every cell, for machines
  molgen-grid --dry-run kv_cache=static        the plan: what would run and why, and about how long it takes
  molgen-grid --force 'gpu=local,...'          rerun one cell (names as --status prints them)
  molgen-grid --logs kv_cache=static --follow  one cell's stdout and stderr (current attempt), followed as it runs
  molgen-grid --accept                         keep every stale cell's result: record what changed as accepted
  molgen-grid --limit 2 attention=eager,sdpa   test mode: 2 items per cell, kept apart from full runs
  molgen-grid gpu=h100,a100 --wait             submit to Slurm (one job array per partition), follow to the end;
                                               beyond the user's MaxSubmitJobs cells wait, submitted as jobs end
  molgen-grid --status --wait                  follow what is queued or running, launching nothing
  molgen-grid --fail-fast                      stop launching at the first cell that fails here
  molgen-grid grid.retry.max_attempts=3        give up a cell after 3 failed attempts in a row (--force reruns it);
                                               on Slurm a retry after OUT_OF_MEMORY / TIMEOUT asks for 2x mem_gb /
                                               time_min (grid.retry.grow.memory, grid.retry.grow.time)
  molgen-grid --watch                          from any shell: follow the grid to its end, never running anything
  molgen-grid --cancel                         cancel the grid's queued, running and held jobs (Slurm or here)
  molgen-grid --cancel 'gpu=h100,...'          cancel one cell's job (names as --status prints them)
  molgen-grid --report --compare kv_cache=static:dynamic   tables, speed-ups, plots under artifacts/
  molgen-grid --report --experiment a,b --compare experiment=a:b   one report of two experiments (artifacts/a+b/)
Overrides use Hydra's grammar (a=x,y  b=range(1,4)  c=glob(*)) and are merged over the experiment's grid.
Put overrides before --force, --accept and --cancel: every word after them is taken as a cell name."""


#: Flags followed by cell names.
NAMING_FLAGS = ("--force", "--accept", "--cancel")


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
    p.add_argument("--experiment", help="a named grid: experiment/NAME.yaml of the study (default: default); "
                                         "a,b: each in turn, one report of both")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true",
                        help="counts per state, then the cells that need attention (every cell of a small grid)")
    action.add_argument("--dry-run", action="store_true", help="show what would run and why; launch nothing")
    action.add_argument("--report", action="store_true",
                        help="tables, speed-ups and plots of the done cells under artifacts/<experiment>/")
    action.add_argument("--accept", nargs="*", metavar="CELL",
                        help="record the current fingerprint of these stale cells (no name: all) without rerunning "
                             "them; the former summary is kept in the cell's history/")
    action.add_argument("--cancel", nargs="*", metavar="CELL",
                        help="cancel the queued, running and held jobs of these cells (no name: of the grid), on "
                             "Slurm (one scancel per array) or on this machine; they read cancelled, and the next "
                             "run reruns them")
    action.add_argument("--watch", action="store_true",
                        help="follow the grid's queued and running cells to their end from any shell; never runs "
                             "or submits anything")
    action.add_argument("--logs", metavar="CELL",
                        help="the stdout and stderr of one cell's current attempt (a name or part of one, as --force "
                             "takes them), Slurm's or this machine's")
    p.add_argument("--follow", action="store_true", help="with --logs: keep printing while the cell runs")
    p.add_argument("--attempt", type=int, metavar="N", help="with --logs: an earlier attempt (1 = the first)")
    p.add_argument("--compare", action="append", default=[], metavar="AXIS=A:B",
                   help="with --report: matched pairs that differ only in AXIS (repeatable)")
    p.add_argument("--heatmap", metavar="X,Y", help="with --report: the two settings of the heatmap")
    p.add_argument("--json", action="store_true", help="with --status: print JSON")
    p.add_argument("--all", action="store_true", help="with --status: list every cell, done ones too")
    p.add_argument("--force", nargs="*", metavar="CELL", help="rerun these cells even if done (no name: all)")
    p.add_argument("--wait", action="store_true",
                   help="follow every queued or running cell of the grid to its end, whoever submitted it: after a "
                        "run (which first launches what is not done), or after --status (which launches nothing); "
                        "it polls every 5 s, after the first minute every 30 s")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop launching after the first cell of this run that fails (a cell run here: no further "
                        "cell starts and no further array is submitted; arrays already submitted are left alone, "
                        "and their failures show later); the cells not launched stay as they were")
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
        "accept" if args.accept is not None else "cancel" if args.cancel is not None else \
        "watch" if args.watch else "logs" if args.logs is not None else "run"
    argv = ["molgen_grid", "--multirun", f"hydra.launcher.action={action}"]
    if args.experiment is not None:
        argv.append(f"experiment={safe_component(args.experiment, 'experiment name')}")
    if args.json:
        argv.append("hydra.launcher.json=true")
    if args.all:
        argv.append("hydra.launcher.all=true")
    if args.wait:
        argv.append("hydra.launcher.wait=true")
    if args.fail_fast:
        argv.append("hydra.launcher.fail_fast=true")
    if args.compare:
        argv.append(f"hydra.launcher.compare={hydra_list(args.compare)}")
    if args.heatmap:
        argv.append(f"hydra.launcher.heatmap={hydra_list(args.heatmap.split(','))}")
    if args.force is not None:
        names = args.force or ["*"]
        argv.append(f"hydra.launcher.force={hydra_list(names)}")
    if args.accept:
        argv.append(f"hydra.launcher.accept={hydra_list(args.accept)}")
    if args.cancel:
        argv.append(f"hydra.launcher.cancel={hydra_list(args.cancel)}")
    if args.logs is not None:
        argv.append(f"hydra.launcher.logs='{args.logs}'")
    if args.follow:
        argv.append("hydra.launcher.follow=true")
    if args.attempt is not None:
        argv.append(f"hydra.launcher.attempt={args.attempt}")
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit {args.limit}: give a positive number of items per cell")
        argv.append(f"hydra.launcher.limit={args.limit}")
    return argv + args.overrides


def split_names(argv: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Take the cell names that follow --force, --accept and --cancel out of the command line.

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
    args = parser().parse_intermixed_args(rest + [flag for flag in ("--accept", "--cancel") if flag in names])
    args.force, args.accept, args.cancel = names.get("--force"), names.get("--accept"), names.get("--cancel")
    if args.json and not args.status:
        parser().error("--json goes with --status")
    if args.all and not args.status:
        parser().error("--all goes with --status")
    if args.wait and (args.json or args.dry_run or args.report or args.watch or args.cancel is not None):
        raise InputError("--wait goes with a run (launch, then follow) or with --status (follow, launching "
                         "nothing), not with --json, --dry-run, --report, --watch or --cancel")
    if (args.compare or args.heatmap) and not args.report:
        parser().error("--compare and --heatmap go with --report")
    if (args.follow or args.attempt is not None) and args.logs is None:
        parser().error("--follow and --attempt go with --logs CELL")
    argv = hydra_argv(args)
    from molgen_grid.__main__ import CONF_DIR
    from molgen_grid.grid.front_door import config_tree, run_sweep

    tree = [*(["--config-dir", args.config_dir] if args.config_dir else []),
            *(["--config-name", args.config_name] if args.config_name else [])]
    _, conf_dir, config_name = config_tree(["molgen-grid", *tree], CONF_DIR)
    run_sweep(conf_dir, config_name, argv)


if __name__ == "__main__":
    main()
