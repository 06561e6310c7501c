"""Paired comparisons between study cells, and the one rule that turns them into words.

A study compares cells seed by seed: one seed gives every cell the same initial parameters, the
same batches in the same order and the same augmentation keys, so the per-seed differences
``d = cell - reference`` carry the effect and little else. For ``n`` seeds:

* the mean and sample standard deviation (ddof = 1) of ``d``;
* the two-sided paired t-test of ``mean d = 0`` (``p``), and its 95 % confidence interval;
* with several comparisons named as one family, Holm's step-down adjustment of their ``p``
  (``p_adjusted``: the family-wise error stays at ``alpha``);
* the smallest difference the design can detect: the true mean difference that a two-sided
  paired t-test at ``alpha`` finds with probability ``power`` (80 %), given ``n`` and the
  observed spread of ``d`` (noncentral t);
* the verdict, by :data:`VERDICT_RULE`.

``seeds_for_power(sd, difference)`` gives the number of seeds a design needs to detect
``difference`` with that power, from a pilot's spread; a study config may set its seeds with it,
e.g. ``seeds = tuple(range(seeds_for_power(pilot_sd, effect)))``: ``adc_ablation:midi`` does, from
the spread of its first three seeds (3 seeds detect its 0.0075 target); the other ``:midi``
studies fix 3 seeds until a pilot of theirs has run.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import optimize
from scipy import stats as scipy_stats

ALPHA = 0.05
POWER = 0.8
VERDICTS = ('separated', 'opposite', 'direction only', 'not separated')
VERDICT_RULE = (
    'A comparison\'s verdict comes from its per-seed paired differences d (cell minus '
    'reference) and the sign the paper expects (+: the cell higher): **separated** when the '
    'two-sided paired t-test gives p < 0.05 (Holm-adjusted within the comparison\'s family, '
    'when it has one) and the mean of d has the expected sign (or the paper expects none); '
    '**opposite** when p < 0.05 and the mean has the other sign; **direction only** when '
    'p >= 0.05 but every seed\'s d has the expected sign (n >= 3); **not separated** '
    'otherwise; **not run** when no seed has both cells, **too few seeds** when one has. Beside each verdict, the smallest difference the design could detect (80 % '
    'power at the observed spread): "not separated" with a detectable difference larger than '
    'the paper\'s effect means the design could not have seen it.')


def _t_test(differences: np.ndarray) -> tuple[float, float]:
  """``(sd, two-sided p)`` of the paired t-test; a spread of zero gives p 0 (a constant
  non-zero difference) or 1 (none)."""
  n = len(differences)
  if n < 2:
    return math.nan, math.nan
  mean, sd = float(differences.mean()), float(differences.std(ddof=1))
  if sd == 0.0:
    return 0.0, 0.0 if mean != 0.0 else 1.0
  t = mean / (sd / math.sqrt(n))
  return sd, float(2 * scipy_stats.t.sf(abs(t), df=n - 1))


def power_of(difference: float, sd: float, n: int, alpha: float = ALPHA) -> float:
  """The probability that a two-sided paired t-test at ``alpha`` over ``n`` seeds rejects
  ``mean = 0`` when the true mean difference is ``difference`` and its spread ``sd``."""
  if n < 2 or not sd > 0:
    return math.nan
  df, shift = n - 1, abs(difference) * math.sqrt(n) / sd
  critical = scipy_stats.t.ppf(1 - alpha / 2, df)
  return float(scipy_stats.nct.sf(critical, df, shift) + scipy_stats.nct.cdf(-critical, df, shift))


def minimum_detectable_difference(sd: float, n: int, alpha: float = ALPHA,
                                  power: float = POWER) -> float:
  """The true mean difference found with probability ``power`` (nan for n < 2; 0 when the
  differences do not spread at all)."""
  if n < 2 or math.isnan(sd):
    return math.nan
  if sd == 0.0:
    return 0.0

  def shortfall(d):
    achieved = power_of(d, sd, n, alpha)
    return 1.0 - power if math.isnan(achieved) else achieved - power  # nan: far in the tail
  upper = sd
  while shortfall(upper) < 0:  # the power rises with the difference: bracket, then solve
    upper *= 2
  return float(optimize.brentq(shortfall, 0.0, upper))


def seeds_for_power(sd: float, difference: float, *, alpha: float = ALPHA, power: float = POWER,
                    minimum: int = 3, maximum: int = 30) -> int:
  """The fewest seeds (at least ``minimum``) whose paired t-test detects ``difference`` with
  ``power``, at a per-seed spread ``sd`` (from a pilot); ``maximum`` if none up to it does."""
  for n in range(max(minimum, 2), maximum + 1):
    if power_of(difference, sd, n, alpha) >= power:
      return n
  return maximum


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm's step-down adjusted p-values (monotone, at most 1), in the given order."""
  p = np.asarray(p_values, np.float64)
  order = np.argsort(p)
  adjusted = np.empty_like(p)
  running = 0.0
  for rank, index in enumerate(order):
    running = max(running, min(1.0, (len(p) - rank) * p[index]))
    adjusted[index] = running
  return adjusted.tolist()


def verdict(differences: Sequence[float], p_adjusted: float, expect: int | None,
            alpha: float = ALPHA) -> str:
  """:data:`VERDICT_RULE` for paired ``differences``, their (adjusted) ``p`` and the paper's
  expected sign ``expect`` (+1, -1 or None)."""
  d = np.asarray(differences, np.float64)
  if len(d) < 2 or math.isnan(p_adjusted):
    return 'not run' if len(d) == 0 else 'too few seeds'
  sign = int(np.sign(d.mean()))
  if p_adjusted < alpha and sign != 0:
    return 'opposite' if expect is not None and sign == -expect else 'separated'
  if expect is not None and len(d) >= 3 and np.all(np.sign(d) == expect):
    return 'direction only'
  return 'not separated'


def compare(differences: Sequence[float], *, expect: int | None = None, alpha: float = ALPHA,
            power: float = POWER) -> dict:
  """The statistics of one comparison before any family adjustment (``p_adjusted`` = ``p``)."""
  d = np.asarray(differences, np.float64)
  n = len(d)
  mean = float(d.mean()) if n else math.nan
  sd, p = _t_test(d)
  if n >= 2 and sd > 0:
    half = float(scipy_stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
  else:
    half = math.nan if n < 2 else 0.0
  return {'n': n, 'mean': mean, 'std': sd, 'ci_low': mean - half, 'ci_high': mean + half,
          'p': p, 'p_adjusted': p, 'mde': minimum_detectable_difference(sd, n, alpha, power),
          'expect': expect, 'differences': d.tolist(),
          'verdict': verdict(d, p, expect, alpha)}


def adjust_family(comparisons: Sequence[dict], alpha: float = ALPHA) -> None:
  """Holm-adjusts the ``p`` of one family's comparisons in place and re-derives their
  verdicts."""
  valid = [c for c in comparisons if not math.isnan(c['p'])]
  for c, adjusted in zip(valid, holm([c['p'] for c in valid])):
    c['p_adjusted'] = adjusted
    c['verdict'] = verdict(c['differences'], adjusted, c['expect'], alpha)
