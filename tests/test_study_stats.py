"""The studies' statistics: paired tests, the smallest detectable difference, Holm's adjustment,
seeds from a target power, and the one verdict rule."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from glf_jax.study import stats


def test_paired_statistics_match_scipy():
  d = [0.012, 0.004, 0.009, -0.001, 0.007]
  c = stats.compare(d, expect=1)
  assert c['n'] == 5 and c['mean'] == pytest.approx(np.mean(d))
  assert c['std'] == pytest.approx(np.std(d, ddof=1))
  assert c['p'] == pytest.approx(scipy_stats.ttest_1samp(d, 0.0).pvalue)
  low, high = scipy_stats.t.interval(0.95, 4, loc=np.mean(d), scale=scipy_stats.sem(d))
  assert (c['ci_low'], c['ci_high']) == (pytest.approx(low), pytest.approx(high))


@pytest.mark.parametrize('n', [3, 5, 10])
def test_the_detectable_difference_is_found_with_80_percent_power(n):
  """By simulation: a true difference of the reported size is detected in 80 % of designs."""
  sd = 0.01
  mde = stats.minimum_detectable_difference(sd, n)
  rng = np.random.default_rng(n)
  draws = rng.normal(mde, sd, (20_000, n))
  detected = scipy_stats.ttest_1samp(draws, 0.0, axis=1).pvalue < stats.ALPHA
  assert detected.mean() == pytest.approx(stats.POWER, abs=0.015)
  # The case: ADC vs baseline, sd 0.0022 over 3 seeds -> about 0.0072.
  assert stats.minimum_detectable_difference(0.0022, 3) == pytest.approx(0.0072, abs=1e-4)


def test_seeds_for_power():
  n = stats.seeds_for_power(0.01, 0.015)
  assert stats.power_of(0.015, 0.01, n) >= 0.8 > stats.power_of(0.015, 0.01, n - 1)
  assert stats.seeds_for_power(0.001, 0.1) == 3  # at least three
  assert stats.seeds_for_power(1.0, 1e-4, maximum=12) == 12


def test_holm_adjustment():
  assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
  assert stats.holm([0.5]) == [0.5]
  assert max(stats.holm([0.4, 0.5, 0.9])) <= 1.0


@pytest.mark.parametrize('differences,expect,verdict', [
    ([0.02, 0.021, 0.019, 0.02], 1, 'separated'),
    ([0.02, 0.021, 0.019, 0.02], None, 'separated'),
    ([-0.02, -0.021, -0.019, -0.02], 1, 'opposite'),
    ([0.001, 0.03, 0.002], 1, 'direction only'),        # every seed +, p large
    ([0.001, 0.03, 0.002], None, 'not separated'),      # no expected sign: no direction claim
    ([0.01, -0.02, 0.015], 1, 'not separated'),
    ([0.0, 0.0044, 0.0022], 1, 'not separated'),        # a zero is not the expected sign
    ([0.01], 1, 'too few seeds'),                       # one seed: no test
    ([], 1, 'not run'),                                 # no seed has both cells
])
def test_the_verdict_rule(differences, expect, verdict):
  assert stats.compare(differences, expect=expect)['verdict'] == verdict


def test_a_family_adjustment_can_withdraw_a_separation():
  # p = 0.03 alone is separated; as the smallest of three with 0.04 and 0.5 Holm gives 0.09.
  family = [stats.compare(d, expect=1) for d in
            ([0.010, 0.012, 0.004], [0.02, 0.01, 0.005, 0.012], [0.01, -0.01, 0.001])]
  family[0].update(p=0.03, verdict=stats.verdict(family[0]['differences'], 0.03, 1))
  family[1].update(p=0.04)
  family[2].update(p=0.5)
  assert family[0]['verdict'] == 'separated'
  stats.adjust_family(family)
  assert family[0]['p_adjusted'] == pytest.approx(0.09)
  assert family[0]['verdict'] == 'direction only'


def test_constant_differences():
  c = stats.compare([0.01, 0.01, 0.01], expect=1)
  assert c['std'] == 0.0 and c['p'] == 0.0 and c['mde'] == 0.0 and c['verdict'] == 'separated'
  c = stats.compare([0.0, 0.0, 0.0], expect=1)
  assert c['p'] == 1.0 and c['verdict'] == 'not separated'
  assert math.isnan(stats.compare([0.01], expect=1)['mde'])


def test_the_midi_adc_seeds_come_from_the_pilot_spread_of_the_committed_cells():
  """configs/studies/adc_ablation.py:midi sets its seeds by seeds_for_power from a pilot spread:
  that spread is the one of the committed records (ADC - baseline, linear top-1, seeds 0-2)."""
  import json  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  from glf_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(__file__).resolve().parent.parent
  cells = root / 'studies/results/adc_ablation_midi/cells'
  top1 = {(cell, seed): json.loads((cells / cell / f'seed{seed}.json').read_text())['metrics'][
      'linear/top1'] for cell in ('adc', 'baseline') for seed in range(3)}
  d = [top1['adc', s] - top1['baseline', s] for s in range(3)]
  study = config_lib.load_config_module(str(root / 'configs/studies/adc_ablation.py'))
  assert round(float(np.std(d, ddof=1)), 4) == study.MIDI_PILOT_SD
  assert study.MIDI_SEEDS == tuple(range(stats.seeds_for_power(study.MIDI_PILOT_SD,
                                                               study.MIDI_TARGET)))
  assert len(study.MIDI_SEEDS) >= 3
  assert tuple(study.get_config('midi').study.seeds) == study.MIDI_SEEDS
