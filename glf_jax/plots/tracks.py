"""``tracks.png``: a cohort's tracked alignment against the training step (from ``tracks.jsonl``):
CKA, RSA (Pearson) and the weight gap (sum over layers) of every pair of members, and each
member's kNN accuracy."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure

from glf_jax.plots.common import save_png
from glf_jax.run import layout
from glf_jax.run import metrics_log


def read_tracks(workdir: str) -> list[dict[str, Any]]:
  return metrics_log.read(layout.path(workdir, layout.TRACKS_LOG))


def draw_tracks(workdir: str, records: Sequence[Mapping[str, Any]] | None = None) -> str | None:
  """Draws ``<workdir>/tracks.png`` from ``records`` (default: ``tracks.jsonl``); returns its path,
  or None without records."""
  records = list(read_tracks(workdir) if records is None else records)
  if not records:
    return None
  keys = sorted({k for r in records for k in r})
  panels = [('CKA (h)', [k for k in keys if k.endswith('/cka_h')]),
            ('RSA Pearson (h)', [k for k in keys if k.endswith('/rsa_h_pearson')]),
            ('weight gap (sum over layers)', [k for k in keys if k.endswith('/weight_gap_sum')]),
            ('kNN top-1', [k for k in keys if k.endswith('/knn_top1')])]
  figure = Figure(figsize=(16, 3.6))
  for i, (title, names) in enumerate(panels):
    ax = figure.add_subplot(1, len(panels), i + 1)
    for key in names:
      pairs = [(r['step'], r[key]) for r in records if isinstance(r.get(key), (int, float))]
      if pairs:
        steps, values = zip(*pairs)
        ax.plot(steps, values, marker='.', label=key.split('/')[1])
    ax.set_title(title)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
    if names:
      ax.legend(fontsize=7)
  figure.tight_layout()
  return save_png(figure, layout.path(workdir, layout.TRACKS_PLOT), dpi=90)
