"""Results side by side: ``format_table`` of several flat metric dicts (e.g. random init vs
pretrained)."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np


def _format_value(value) -> str:
  if value is None:
    return '-'
  if isinstance(value, (bool, np.bool_)):
    return str(bool(value))
  try:
    number = float(value)
  except (TypeError, ValueError):
    return str(value)
  return f'{number:.4f}' if math.isfinite(number) else str(number)


def format_table(columns: Mapping[str, Mapping[str, float]]) -> str:
  """An aligned plain-text table: one row per metric, one column per entry of ``columns``.

  Rows are the union of the metric names in first-seen order; values are printed with 4
  decimals (``-`` where a column lacks the metric). The first line is the header
  (``metric`` and the column names), the second a rule.

  Example::

      format_table({'random init': {'knn/k20': 0.84}, 'pretrained': {'knn/k20': 0.96}})
      # metric   random init  pretrained
      # -------  -----------  ----------
      # knn/k20       0.8400      0.9600
  """
  names = list(dict.fromkeys(name for values in columns.values() for name in values))
  header = ['metric', *columns]
  rows = [[name, *(_format_value(values.get(name)) for values in columns.values())]
          for name in names]
  widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

  def line(row):
    cells = [str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
             for i, (cell, width) in enumerate(zip(row, widths))]
    return '  '.join(cells).rstrip()

  return '\n'.join([line(header), '  '.join('-' * width for width in widths), *map(line, rows)])
