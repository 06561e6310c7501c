"""Barlow Twins (Zbontar et al. 2021) on CIFAR-10/100 or ImageNet-100, ResNet-18/50.

    python -m glf_jax.main --config configs/barlow_twins.py --workdir runs/c10_barlow_twins
    python -m glf_jax.main --config configs/barlow_twins.py:cifar100,adc --workdir runs/c100_barlow_twins_adc
    python -m glf_jax.main --config configs/barlow_twins.py:imagenet100,resnet50 --workdir runs/in100_barlow_twins
    python -m glf_jax.main --config configs/barlow_twins.py:tiny --workdir /tmp/barlow_twins_tiny   # a minute, offline

Words after ``:`` (``glf_jax.config.method_config``): a dataset (``cifar10``, the default,
``cifar100``, ``imagenet100``, ``digits``), ``resnet50``, ``adc`` (ADC as its paper runs it) and
``tiny`` (the small-run switch; digits unless a dataset is named). The experiment's numbers are
below; the method's own (loss, heads) are its definition in ``glf_jax/methods/barlow_twins.py``.
For a pod, raise only ``train.batch_size`` (``method_config``'s docstring says how).
"""

from glf_jax.config import finish_method_config, method_config


def get_config(arg=None):
  config, words = method_config('barlow_twins', arg)
  imagenet = words['imagenet']
  config.train.batch_size = 256 if imagenet else 512
  config.train.epochs = 400 if imagenet else 1000
  config.optim.update(name='lars', base_learning_rate=0.3, weight_decay=1e-4, warmup_epochs=10.0)
  if not imagenet:
    config.objective.barlow_twins.lambda_offdiag = 5.1e-3   # solo-learn's CIFAR value
  return finish_method_config(config, words)
