"""Redraw a run's pictures from its files (no model, no data):

    python -m glf_jax.main --config configs/plot.py --workdir runs/cifar10_simclr

writes ``curves.png`` (loss and its terms, online probe accuracy, learning rate against the step)
from the workdir's ``metrics.jsonl`` and ``embedding.png`` (t-SNE of test-set features by class,
random init next to pretrained) from its ``embedding.npz``, whichever of the two exists
(``glf_jax.plots.run.redraw``). Pretraining and evaluation draw them too; this mode redraws them, e.g.
while a run is still training or after a change to the plotting code.
"""

from glf_jax.config import base_config


def get_config():
  config = base_config('simclr', 'cifar10')
  config.mode = 'plot'
  return config
