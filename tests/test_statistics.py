"""Noise judged by statistics: the rank test over repeats, the speed-up's interval, one-repeat figures."""
from __future__ import annotations

import statistics as stdlib

import pytest
from scipy.stats import mannwhitneyu

from molgen_grid.grid.statistics import ALPHA, compare

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
