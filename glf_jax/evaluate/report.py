"""Results side by side: ``format_table`` of several flat metric dicts (e.g. random init vs
pretrained), with which direction of each metric is better and counts printed as counts."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np


# The last part of a metric's name -> which way is better. Accuracies and class separation
# (higher), a loss, class compactness relative to separation, alignment (the mean squared
# distance of positive pairs) and uniformity (the log of the mean Gaussian potential: lower is
# more uniform) (lower).
_BETTER = {'top1': 'higher', 'top5': 'higher', 'separability_mean': 'higher',
           'separability_min': 'higher', 'compactness': 'lower', 'ratio': 'lower',
           'alignment': 'lower', 'uniformity': 'lower', 'train_loss': 'lower'}
# Counts, printed without decimals.
_COUNTS = ('epochs', 'steps', 'num_augmentations', 'num_images', 'num_samples', 'examples')


def better(name: str) -> str:
  """``'higher'``, ``'lower'`` or ``''`` (no direction, e.g. a count) for a metric name."""
  last = name.rsplit('/', 1)[-1]
  if name.startswith('knn/'):
    return 'higher'
  return _BETTER.get(last, '')


def _format_value(name: str, value) -> str:
  if value is None:
    return '-'
  if isinstance(value, (bool, np.bool_)):
    return str(bool(value))
  try:
    number = float(value)
  except (TypeError, ValueError):
    return str(value)
  if not math.isfinite(number):
    return str(number)
  if isinstance(value, (int, np.integer)) or (
      name.rsplit('/', 1)[-1] in _COUNTS and number.is_integer()):
    return str(int(number))
  return f'{number:.4f}'


def format_table(columns: Mapping[str, Mapping[str, float]]) -> str:
  """An aligned plain-text table: one row per metric, one column per entry of ``columns``.

  Rows are the union of the metric names in first-seen order; values are printed with 4
  decimals, counts as integers (``-`` where a column lacks the metric). The first line is the
  header (``metric``, ``better`` — ``higher``/``lower``/empty — and the column names), the
  second a rule.

  Example::

      format_table({'random init': {'knn/k20': 0.84}, 'pretrained': {'knn/k20': 0.96}})
      # metric   better  random init  pretrained
      # -------  ------  -----------  ----------
      # knn/k20  higher       0.8400      0.9600
  """
  names = list(dict.fromkeys(name for values in columns.values() for name in values))
  header = ['metric', 'better', *columns]
  rows = [[name, better(name), *(_format_value(name, values.get(name))
                                 for values in columns.values())]
          for name in names]
  widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

  def line(row):
    cells = [str(cell).ljust(width) if i < 2 else str(cell).rjust(width)
             for i, (cell, width) in enumerate(zip(row, widths))]
    return '  '.join(cells).rstrip()

  return '\n'.join([line(header), '  '.join('-' * width for width in widths), *map(line, rows)])
