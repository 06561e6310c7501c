"""Linear probe (and kNN, class geometry, alignment/uniformity) of a pretrained run.

    python -m glf_jax.main --config configs/linear_probe.py \
        --config.eval.checkpoint_dir=runs/cifar10_simclr --workdir runs/cifar10_simclr/probe

Frozen backbone features ``h`` are extracted once (cached in the workdir), then an optax linear
classifier is trained on them (docs/maths.md §4). ``--config.mode=knn`` runs the kNN alone. The data and
augmentation statistics are those of the pretrained run unless ``eval.data.name`` is set.
"""

from glf_jax.config import base_config


def get_config():
  config = base_config('simclr', 'cifar10')
  config.mode = 'eval'
  return config
