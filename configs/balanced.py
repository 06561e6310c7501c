"""The balanced contrastive loss (arXiv 2510.10572) on CIFAR-10/100 or ImageNet-100, ResNet-18/50.

    python -m glf_jax.main --config configs/balanced.py --workdir runs/c10_balanced
    python -m glf_jax.main --config configs/balanced.py:cifar100,adc --workdir runs/c100_balanced_adc
    python -m glf_jax.main --config configs/balanced.py:imagenet100,resnet50 --workdir runs/in100_balanced
    python -m glf_jax.main --config configs/balanced.py:tiny --workdir /tmp/balanced_tiny   # a minute, offline

Words after ``:`` (``glf_jax.config.method_config``): a dataset (``cifar10``, the default,
``cifar100``, ``imagenet100``, ``digits``), ``resnet50``, ``adc`` (ADC as its paper runs it) and
``tiny`` (the small-run switch; digits unless a dataset is named). The experiment's numbers are
below; the method's own (loss, heads) are its definition in ``glf_jax/methods/balanced.py``.
For a pod, raise only ``train.batch_size`` (``method_config``'s docstring says how).

The (α, λ) grid of the paper: ``--config.objective.balanced.alpha=8 --config.objective.balanced.lam=1``;
the similarity ablation: ``--config.objective.balanced.similarity=neg_sq_euclidean``. SimCLR's
recipe (``configs/simclr.py``).
"""

from glf_jax.config import finish_method_config, load_config_module, method_config


def get_config(arg=None):
  config, words = method_config('balanced', arg)
  load_config_module('configs/simclr.py').simclr_recipe(config, words['imagenet'])
  return finish_method_config(config, words)
