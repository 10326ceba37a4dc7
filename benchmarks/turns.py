"""The checkouts taking turns, run by run, so that a burst of other work on the machine slows each alike: the best
timing of every action by every checkout (benchmarks/scale.py's sections)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from scale import Checkout, Timing


def best_by_turns(trees: list[Checkout], actions: Iterable[str], runs: int,
                  timed: Callable[[Checkout, str], Timing]) -> dict[tuple[str, str], Timing]:
    """`timed(tree, action)` run `runs` times per action, every tree once a round; the best per tree and action."""
    best: dict[tuple[str, str], Timing] = {}
    for action in actions:
        for _ in range(runs):
            for tree in trees:
                best[tree.label, action] = timed(tree, action).best(best.get((tree.label, action)))
    return best
