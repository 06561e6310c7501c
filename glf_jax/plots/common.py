"""What every picture shares: a headless matplotlib ``Figure`` written atomically as PNG."""

from __future__ import annotations

from matplotlib.figure import Figure

from glf_jax.runtime import fileio


def save_png(figure: Figure, path: str, dpi: int = 100) -> str:
  """Writes ``figure`` to ``path`` (readers never see half a file); returns ``path``."""
  with fileio.atomic_write(path, 'wb') as f:
    figure.savefig(f, format='png', dpi=dpi)
  return path
