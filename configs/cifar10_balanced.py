"""Balanced contrastive loss (arXiv 2510.10572; α = 4, λ = 2) on CIFAR-10, ResNet-18.

    python -m glf_jax.main --config configs/cifar10_balanced.py --workdir runs/cifar10_balanced
    python -m glf_jax.main --config configs/cifar10_balanced.py:adc --workdir runs/c10_bal_adc

The α, λ grid of the paper: ``--config.objective.balanced.alpha=8 --config.objective.balanced.lam=1``;
similarity ablation: ``--config.objective.balanced.similarity=neg_sq_euclidean``.
"""

from glf_jax.train.config import paper_config_from_arg


def get_config(arg=None):
  return paper_config_from_arg('balanced', 'cifar10', arg)
