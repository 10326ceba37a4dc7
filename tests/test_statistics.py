"""Noise judged by statistics: the rank test over repeats, the speed-up's interval, one-repeat figures, Holm's
adjustment for many comparisons."""
from __future__ import annotations

import statistics as stdlib

import pytest
from scipy.stats import mannwhitneyu

from molgen_grid.grid.statistics import ALPHA, adjusted, compare, holm

FAST = [11.0, 10.5, 12.0, 11.5, 10.8]
SLOW = [5.0, 5.5, 6.0, 5.2, 5.8]


def test_a_clear_difference_is_real_with_an_interval_around_the_ratio() -> None:
    result = compare(FAST, SLOW)
    assert result.speedup == pytest.approx(stdlib.median(FAST) / stdlib.median(SLOW))
    assert result.p_value == pytest.approx(mannwhitneyu(FAST, SLOW, alternative="two-sided").pvalue)
    assert result.p_value < ALPHA and result.within_noise is False and not result.one_repeat
    assert result.low <= result.speedup <= result.high
    assert 1.5 < result.low and result.high < 2.6  # the ratios of any two values lie in [10.5/6, 12/5]
    assert compare(FAST, SLOW) == result  # a fixed seed: the same report every time


def test_overlapping_repeats_are_within_the_noise() -> None:
    other = [11.2, 10.4, 11.9, 11.6, 10.9]
    result = compare(FAST, other)
    assert result.within_noise is True and result.p_value >= ALPHA
    assert result.low < 1 < result.high


def test_lower_is_better_turns_the_ratio_over() -> None:
    result = compare(SLOW, FAST, lower_is_better=True)  # a time: the cell took half as long
    assert result.speedup == pytest.approx(stdlib.median(FAST) / stdlib.median(SLOW))
    assert result.within_noise is False


def test_one_repeat_gives_a_ratio_and_no_judgement() -> None:
    result = compare([10.0], SLOW)
    assert result.speedup == pytest.approx(10.0 / stdlib.median(SLOW))
    assert result.one_repeat and result.within_noise is None and result.low is None


def test_missing_values_give_nothing() -> None:
    assert compare([], SLOW) is None and compare(FAST, [None]) is None and compare(None, SLOW) is None
    assert compare([None, 4.0, 5.0], [2.0, 2.5]).speedup == pytest.approx(4.5 / 2.25)


def test_holm_steps_down_through_the_sorted_p_values() -> None:
    """A worked example: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 are 0.02, 0.03, 0.06, 0.04; the last is
    raised to 0.06 (never below an earlier one); back in the given order. Capped at 1."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0] and holm([0.02]) == [0.02] and holm([]) == []


def test_adjusted_comparisons_judge_the_noise_by_the_adjusted_p() -> None:
    """Two comparisons each at p = 2/70 (4 repeats against 4, every one above): real alone, within the noise
    once adjusted for two; a one-repeat ratio and a missing one are left as they were."""
    a, b, c = [1.0, 1.1, 1.2, 1.3], [2.0, 2.1, 2.2, 2.3], [3.0, 3.1, 3.2, 3.3]
    alone = compare(b, a)
    assert alone.p_value == pytest.approx(2 / 70) and alone.within_noise is False
    one = compare([5.0], a)
    both = adjusted([alone, compare(c, a), one, None])
    assert [r.p_adjusted for r in both[:2]] == pytest.approx([4 / 70, 4 / 70])
    assert both[0].p_value == alone.p_value and both[0].within_noise is True and both[1].within_noise is True
    assert both[2] == one and both[3] is None
