"""Evaluation results as a side-by-side table (e.g. random init vs pretrained)."""

from __future__ import annotations

from glf_jax.evaluate.linear_probe import linear_probe  # noqa: F401  (the probe, re-exported)


def format_table(columns: dict[str, dict[str, float]]) -> str:
  """Rows = metric names (first-seen order), one column per entry, 4 decimals, aligned."""
  names = []
  for values in columns.values():
    names.extend(k for k in values if k not in names)
  header = ['metric', *columns]
  rows = [[name, *(f'{values[name]:.4f}' if name in values else '-'
                   for values in columns.values())] for name in names]
  widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
  line = lambda r: '  '.join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                             for i, (c, w) in enumerate(zip(r, widths)))
  return '\n'.join([line(header), '  '.join('-' * w for w in widths), *map(line, rows)])
