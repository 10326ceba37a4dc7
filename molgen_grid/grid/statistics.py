"""Is a cell really faster than the baseline? A rank test over the timed repeats and an interval for the ratio.

Each cell reports every timed repeat's value of a figure. Two cells differ beyond the noise when a two-sided
Mann-Whitney U test over those values says so (p < ALPHA); the speed-up is the ratio of medians with a 95%
bootstrap interval (percentile method, a fixed seed so reports are reproducible). With fewer than two repeats
on either side nothing can be said, and the comparison is marked as resting on one repeat.

A report compares many cells with one baseline: at ALPHA each, one in twenty configurations that do not differ
would be called different. The p-values of a report's comparisons are therefore adjusted together by Holm's
step-down method (Holm-Bonferroni: valid under any dependence between the tests, and never weaker than plain
Bonferroni), and a difference is real when its adjusted p is under ALPHA. Neither scipy nor any installed library
offers Holm (statsmodels' multipletests does, but it is not a dependency), so `holm` is its few lines.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class Comparison:
    #: cell / baseline when higher is better, baseline / cell when lower is: above 1 the cell is better.
    speedup: float
    low: float | None
    high: float | None
    p_value: float | None
    #: The p-value adjusted for the report's number of comparisons (Holm), once `adjusted` has set it.
    p_adjusted: float | None = None

    @property
    def one_repeat(self) -> bool:
        return self.p_value is None

    @property
    def within_noise(self) -> bool | None:
        """Whether the test finds no difference: by the adjusted p where the comparison was adjusted."""
        p = self.p_value if self.p_adjusted is None else self.p_adjusted
        return None if p is None else p >= ALPHA


def finite(values: list[float | None] | None) -> list[float]:
    return [float(v) for v in values or [] if v is not None and math.isfinite(v)]


def compare(cell: list[float | None] | None, baseline: list[float | None] | None,
            lower_is_better: bool = False) -> Comparison | None:
    """The cell's speed-up over the baseline from their repeats' values; None when either has no value."""
    a, b = finite(cell), finite(baseline)
    if not a or not b or min(statistics.median(a), statistics.median(b)) <= 0:
        return None
    if lower_is_better:
        a, b = b, a
    ratio = statistics.median(a) / statistics.median(b)
    if len(a) < 2 or len(b) < 2:
        return Comparison(ratio, None, None, None)
    p_value = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    if len(set(a)) == 1 and len(set(b)) == 1:
        return Comparison(ratio, ratio, ratio, p_value)
    interval = stats.bootstrap((np.array(a), np.array(b)), lambda x, y, axis: np.median(x, axis=axis)
                               / np.median(y, axis=axis), vectorized=True, paired=False, n_resamples=RESAMPLES,
                               confidence_level=CONFIDENCE, method="percentile",
                               rng=np.random.default_rng(SEED)).confidence_interval
    return Comparison(ratio, float(interval.low), float(interval.high), p_value)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values, in their order: the i-th smallest (from 0) times
    the m - i tests not yet rejected, made non-decreasing along the sorted order, capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def adjusted(comparisons: list[Comparison | None]) -> list[Comparison | None]:
    """The comparisons with their p-values adjusted together (Holm) for their number: those with a test only
    (one-repeat ratios and missing ones as they were)."""
    tested = [i for i, c in enumerate(comparisons) if c is not None and c.p_value is not None]
    out = list(comparisons)
    for i, p in zip(tested, holm([comparisons[i].p_value for i in tested])):
        out[i] = replace(comparisons[i], p_adjusted=p)
    return out


def spread_warning(name: str, values: list[float | None] | None, max_ratio: float | None,
                   max_cv: float | None) -> str | None:
    """A warning when a figure's repeats moved too much to be compared with another cell's: max / min above
    `max_ratio`, or the coefficient of variation (sample stdev / mean) above `max_cv`; None when within both,
    or with fewer than two repeats (nothing to judge) or values that are not all positive."""
    clean = finite(values)
    if len(clean) < 2 or min(clean) <= 0:
        return None
    ratio = max(clean) / min(clean)
    cv = statistics.stdev(clean) / statistics.mean(clean)
    if (max_ratio is None or ratio <= max_ratio) and (max_cv is None or cv <= max_cv):
        return None
    return (f"{name} repeats spread too wide to trust (max/min {ratio:.3g}, coefficient of variation {cv:.0%} "
            f"over {len(clean)} repeats)")
