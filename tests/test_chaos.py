"""A chaos test on the real test cluster (issue 18): a 200-cell grid of short cells while the sweep command is
killed mid-submission, workers are killed (-9), jobs are cancelled and requeued and the node is set DOWN and
back, each at a moment chosen by a seeded draw over the grid's progress (so the same seed makes the same
choices); then plain runs until nothing is left. Every cell must end done exactly once in its summary (its
attempts may show retries), no summary may be lost or rewritten, and nothing may be left queued or held."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import wait_until
from studies import Study, light_study

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.usefixtures("cluster")]
SEED = 18
GRID = ["where=h100,a100,rtx3070", "variant=a,b", "count=range(1,35)", "++where.gres=null",
        "++where.mem_gb=0.25", "++where.time_min=10"]
CELLS = 3 * 2 * 34


def summaries(study: Study) -> dict[str, tuple[str, float]]:
    """Each done cell's summary, as (the attempt that wrote it, when)."""
    out = {}
    for path in (study.results / "default").glob("*/summary.json"):
        data = json.loads(path.read_text())
        out[path.parent.name] = (data["attempt"], data["finished_at"])
    return out


def states(study: Study) -> dict[str, str]:
    return {c["cell"]: c["state"] for c in study.status(*GRID)["cells"]}


def workers(study: Study) -> list[int]:
    """The cells' processes on the node (submitit's job runner for this study's jobs)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            line = (proc / "cmdline").read_text().replace("\0", " ")
        except OSError:
            continue
        if proc.name.isdigit() and "submitit.core._submit" in line and str(study.results) in line:
            found.append(int(proc.name))
    return found


def live_jobs(study: Study) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%Z"], capture_output=True, text=True).stdout
    return [line.split("|")[0] for line in out.splitlines() if line.endswith(f"|{study.cwd}")]


def test_a_grid_survives_kills_cancels_requeues_and_a_node_going_down(tmp_path: Path) -> None:
    study = light_study(tmp_path / "study")
    draw = random.Random(SEED)
    counts = {"sweep kills": 0, "worker kills": 0, "cancels": 0, "requeues": 0, "node down": 0, "runs": 0}
    seen: dict[str, tuple[str, float]] = {}

    def done_count() -> int:
        found = summaries(study)
        for cell, written in found.items():  # a summary, once seen, never changes nor goes away
            assert seen.setdefault(cell, written) == written, f"{cell}'s summary was rewritten"
        assert set(seen) <= set(found), f"summaries lost: {sorted(set(seen) - set(found))}"
        return len(found)

    # the sweep command killed in the middle of its submission
    claimed = draw.randint(5, 150)
    sweep = study.popen(*GRID)
    wait_until(lambda: sweep.poll() is not None or (study.results / "default").is_dir() and sum(
        1 for d in (study.results / "default").iterdir() if (d / "attempts.jsonl").exists()) >= claimed,
        "the sweep never claimed", timeout=120)
    assert sweep.poll() is None, sweep.communicate()[0]
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    counts["sweep kills"] += 1
    study.cli(*GRID, timeout=300)
    counts["runs"] += 1

    node = socket.gethostname()
    for moment in sorted(draw.sample(range(5, CELLS - 20), 8)):
        wait_until(lambda: done_count() >= moment or not live_jobs(study), f"the grid never reached {moment} done",
                   timeout=300)
        action = draw.choice(["worker", "cancel", "requeue", "node", "sweep"])
        jobs = live_jobs(study)
        if action == "worker" and workers(study):
            os.kill(draw.choice(workers(study)), signal.SIGKILL)
            counts["worker kills"] += 1
        elif action == "cancel" and jobs:
            subprocess.run(["scancel", draw.choice(jobs)], check=False)
            counts["cancels"] += 1
        elif action == "requeue" and jobs:
            subprocess.run(["scontrol", "requeue", draw.choice(jobs)], check=False, capture_output=True)
            counts["requeues"] += 1
        elif action == "node":
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=chaos"], check=True)
            resumed = subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True,
                                     text=True)
            if resumed.returncode != 0:
                # the test cluster returns a DOWN node to service when its slurmd registers again
                # (ReturnToService), which may come first: then there is nothing to resume
                state = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%T"], capture_output=True,
                                       text=True).stdout.lower()
                assert not {"down", "drain"} & set(state.replace("*", "").split()), resumed.stderr + state
            counts["node down"] += 1
        else:
            again = study.popen(*GRID)
            os.kill(again.pid, signal.SIGKILL)
            again.wait()
            counts["sweep kills"] += 1

    for _ in range(6):  # plain runs, each followed to its end, until nothing is left to run
        study.cli(*GRID, "--wait", timeout=600)
        counts["runs"] += 1
        held = [c for c, s in states(study).items() if s == "held"]
        for job in live_jobs(study):  # a requeue may hold a job: let it go on
            subprocess.run(["scontrol", "release", job], check=False, capture_output=True)
        if set(states(study).values()) == {"done"} and not held:
            break
    final = states(study)
    duplicates = [d.parent.name for d in (study.results / "default").glob("*/history/*/summary.json")]
    print(f"chaos (seed {SEED}): {CELLS} cells, " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f", duplicates found: {len(duplicates)}")
    assert set(final.values()) == {"done"} and len(final) == CELLS, {s: list(final.values()).count(s)
                                                                     for s in set(final.values())}
    assert done_count() == CELLS and not duplicates and not live_jobs(study)
    for cell, (attempt, _) in summaries(study).items():
        lines = (study.results / "default" / cell / "attempts.jsonl").read_text().splitlines()
        assert attempt in {json.loads(line).get("attempt") for line in lines}
