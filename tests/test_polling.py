"""Polling etiquette (poll.py): `--wait` and `--watch` ask Slurm at most once a poll (one sacct, one squeue), every
5 s in the first minute and every 30 s after it however often states change, read again only the cells that
changed, and never ask Slurm about local cells. Slurm's commands are wrappers that log each call; the clock and
the sleep of polling are the test's, so minutes pass at once and the cells end, when the test lets them, between
two polls."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conftest import Light, started, wait_until
from molgen_grid.grid import plan, poll
from slurm_cluster import logged, wait_for_state

#: What the fake sleep writes into the calls' log: the polls' calls lie between two of them.
MARK = "-- sleep"


class FakeTime:
    """poll.now and poll.pause: each pause moves the clock on and logs a mark; at given times, actions run before
    the poll that follows (a cell let go, and its summary waited for)."""

    def __init__(self, log: Path, at: dict[float, list]) -> None:
        self.log, self.at, self.clock, self.pauses = log, dict(at), 0.0, []

    def now(self) -> float:
        return self.clock

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.clock += seconds
        with self.log.open("a") as f:
            f.write(f"{MARK} {seconds}\n")
        for when in sorted(t for t in self.at if t <= self.clock):
            for action in self.at.pop(when):
                action()


def faked(monkeypatch: pytest.MonkeyPatch, log: Path, at: dict[float, list]) -> tuple[FakeTime, list[str]]:
    """The fake clock and sleep in place, and the cells whose state the plan reads (one name a read)."""
    fake, reads = FakeTime(log, at), []
    monkeypatch.setattr(poll, "now", fake.now)
    monkeypatch.setattr(poll, "pause", fake.pause)
    read_state = plan.read_state

    def counted(store, *args, **kwargs):
        reads.append(store.name)
        return read_state(store, *args, **kwargs)

    monkeypatch.setattr(plan, "read_state", counted)
    return fake, reads


def per_poll(log: Path) -> list[Counter]:
    """The Slurm commands called between two sleeps, by name (the first: before following's first sleep)."""
    polls = [Counter()]
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith(MARK):
            polls.append(Counter())
        else:
            polls[-1][line.split()[0]] += 1
    return polls


@pytest.mark.slurm
def test_wait_asks_slurm_once_a_poll_every_30s_after_the_first_minute(light: Light, cluster: None,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    goes = [light.go(k) for k in "abc"]
    grid = ["where=rtx3070", "++where.gres=null", "++where.mem_gb=0.25", "variant=a",
            f"wait_for={','.join(map(str, goes))}"]
    light.cli(*grid)
    cells = wait_for_state(light, grid, {"running"})
    name = {go: next(n for n, c in cells.items() if f"wait_for={go}" in c["overrides"]) for go in goes}
    # Slurm says RUNNING while the job's Python still starts: the attempt's started_at, a change of its files, comes
    # later and would be one more read of the cell in the follow below
    for cell in name.values():
        wait_until(lambda: started(light.results / "default" / cell), f"{cell}'s code never started")

    def let_go(*which: Path):
        def action() -> None:
            for go in which:
                go.touch()
            for go in which:
                wait_until(lambda: (light.results / "default" / name[go] / "summary.json").exists(),
                           f"{name[go]} never wrote its summary")
        return action

    env, log = logged(light.cwd, "sacct", "squeue")
    light.extra_env = env
    fake, reads = faked(monkeypatch, log, {90: [let_go(goes[0])], 150: [let_go(*goes[1:])]})
    try:
        out = light.cli_here(*grid, "--wait").stdout
    finally:
        light.extra_env = {}
        for go in goes:
            go.touch()
    assert out.rstrip().splitlines()[-1] == "sweep default: 3 cells: 3 done", out
    assert fake.pauses == [5.0] * 12 + [30.0] * 3  # the first minute, then 30 s though a cell ended at 90 s
    # one sacct and one squeue (the live state) a poll, the run's plan first; the last poll, with every summary
    # written, asks nothing
    assert per_poll(log) == [Counter(sacct=1, squeue=1)] * 15 + [Counter()], log.read_text()
    # each cell read by the run's plan, then once more: when it ended (never while it only ran, never once done)
    assert Counter(reads) == {n: 2 for n in name.values()}, reads


def test_following_local_cells_never_asks_slurm(light: Light, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = [f"wait_for={light.go('cell')}", "variant=a"]
    sweep = light.popen(*grid)
    cell = wait_until(lambda: next(iter(light.cell_dirs()), None), "the sweep never claimed its cell")
    wait_until(lambda: started(cell), "the cell's code never started")
    env, log = logged(light.cwd, "sacct", "squeue")
    light.extra_env = env

    def let_go() -> None:
        light.release("cell")
        sweep.wait(timeout=120)

    fake, reads = faked(monkeypatch, log, {10: [let_go]})
    try:
        out = light.cli_here(*grid, "--watch").stdout
    finally:
        light.release("cell")
        sweep.wait(timeout=120)
    assert out.rstrip().splitlines()[-1] == "watched experiment default: 1 cell: 1 done", out
    assert fake.pauses == [5.0, 5.0] and per_poll(log) == [Counter()] * 3  # no Slurm call at all
    assert reads == [cell.name] * 3  # a cell running here is read at every poll: the plan, then 2 polls


def test_a_top_up_that_found_no_room_tries_again_at_the_next_poll() -> None:
    """The grid's jobs ended (none in flight) but still held the room when the top-up asked (a job leaves the
    queue a moment after its cell reads done, or the user's other jobs hold it): with nothing of the grid left to
    end, the next polls must try again, else `--wait` waits forever."""
    from types import SimpleNamespace

    from molgen_grid.grid.top_up import TopUp

    rooms = iter([0, 0, 2])  # how many cells the limit lets out at each try
    tries: list[int] = []

    def submit(entries: list) -> int:
        tries.append(top_up.waiting)
        return top_up.waiting - next(rooms)

    ended = [SimpleNamespace(cell=SimpleNamespace(name=n), state=SimpleNamespace(state="done")) for n in "ab"]
    top_up = TopUp(submit, waiting=2, moving=2)
    assert [top_up(ended) for _ in range(3)] == [True, True, True] and top_up.waiting == 0 and tries == [2, 2, 2]
    assert top_up(ended) is False  # nothing waits: nothing asked
