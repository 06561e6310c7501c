"""The representation report of frozen features (SPEC §4) and results side by side.

* ``representation_report``: linear probe (top-1 / top-5), weighted kNN (k = 20 and 200 by
  default) and the class geometry of the test features, as one flat dict of floats with keys
  ``linear/top1``, ``linear/top5``, ``knn/k20``, ``knn/k200``, ``geometry/compactness``,
  ``geometry/separability_mean``, ``geometry/separability_min``, ``geometry/ratio``.
* ``format_table``: several such dicts (e.g. random init vs pretrained) as an aligned table.
"""

from __future__ import annotations

import math
from typing import Mapping

import ml_collections
import numpy as np

from glf_jax import metrics
from glf_jax.evaluate import knn
from glf_jax.evaluate.linear_probe import linear_probe

__all__ = ['default_probe_config', 'format_table', 'linear_probe', 'representation_report']


def default_probe_config() -> ml_collections.ConfigDict:
  """Linear-probe and kNN settings of :func:`representation_report`.

  ``epochs``, ``batch_size``, ``learning_rate``, ``weight_decay``, ``optimizer`` are those of
  :func:`glf_jax.evaluate.linear_probe.linear_probe`; ``knn_temperature`` and ``knn_k`` (the
  neighbour counts; each clipped to the number of training rows) those of
  :func:`glf_jax.evaluate.knn.knn_accuracy` (T = 0.07, k = 20 and 200, SPEC §4).
  """
  return ml_collections.ConfigDict(dict(
      epochs=100, batch_size=256, learning_rate=0.1, weight_decay=0.0, optimizer='sgd',
      knn_temperature=0.07, knn_k=(20, 200)))


REPORT_PARTS = ('linear', 'knn', 'geometry')


def representation_report(train_features, train_labels, test_features, test_labels, *,
                          num_classes: int, probe_config: ml_collections.ConfigDict,
                          seed: int = 0, parts=REPORT_PARTS) -> dict[str, float]:
  """Linear probe, kNN and class geometry of frozen features (SPEC §4).

  Args:
    train_features, train_labels: ``[n, d]`` features and ``[n]`` int labels in
      ``[0, num_classes)`` (the probe's training set and the kNN memory bank).
    test_features, test_labels: ``[m, d]`` and ``[m]``, the evaluated split.
    num_classes: number of classes (>= 2).
    probe_config: :func:`default_probe_config` or a ConfigDict with the same fields.
    seed: the probe's shuffling seed.
    parts: which of ``linear``, ``knn``, ``geometry`` to compute (default all).

  Returns:
    Flat dict of Python floats: ``linear/top1``, ``linear/top5``, ``knn/k{k}`` for each
    ``probe_config.knn_k`` (named by the requested ``k``), and ``geometry/...``
    (:func:`glf_jax.metrics.class_geometry` of the test features).
  """
  unknown = sorted(set(parts) - set(REPORT_PARTS))
  if unknown:
    raise ValueError(f'parts must be a subset of {list(REPORT_PARTS)}, got {unknown}')
  c = probe_config
  results = {}
  if 'linear' in parts:
    probe = linear_probe(train_features, train_labels, test_features, test_labels,
                         num_classes=num_classes, epochs=int(c.epochs),
                         batch_size=int(c.batch_size), learning_rate=float(c.learning_rate),
                         weight_decay=float(c.weight_decay), optimizer=c.optimizer, seed=seed)
    results.update({'linear/top1': probe['top1'], 'linear/top5': probe['top5']})
  if 'knn' in parts:
    num_train = len(train_labels)
    for k in c.knn_k:
      results[f'knn/k{int(k)}'] = knn.knn_accuracy(
          train_features, train_labels, test_features, test_labels, k=min(int(k), num_train),
          temperature=float(c.knn_temperature), num_classes=num_classes)
  if 'geometry' in parts:
    geometry = metrics.class_geometry(np.asarray(test_features), np.asarray(test_labels))
    results.update({f'geometry/{name}': value for name, value in geometry.items()})
  return {name: float(value) for name, value in results.items()}


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
