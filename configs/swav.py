"""SwAV (Caron et al. 2020) on CIFAR-10/100 or ImageNet-100, ResNet-18/50.

    python -m glf_jax.main --config configs/swav.py --workdir runs/c10_swav
    python -m glf_jax.main --config configs/swav.py:cifar100,adc --workdir runs/c100_swav_adc
    python -m glf_jax.main --config configs/swav.py:imagenet100,resnet50 --workdir runs/in100_swav
    python -m glf_jax.main --config configs/swav.py:tiny --workdir /tmp/swav_tiny   # a minute, offline

Words after ``:`` (``glf_jax.config.method_config``): a dataset (``cifar10``, the default,
``cifar100``, ``imagenet100``, ``digits``), ``resnet50``, ``adc`` (ADC as its paper runs it) and
``tiny`` (the small-run switch; digits unless a dataset is named). The experiment's numbers are
below; the method's own (loss, heads) are its definition in ``glf_jax/methods/swav.py``.
For a pod, raise only ``train.batch_size`` (``method_config``'s docstring says how).
"""

from glf_jax.config import finish_method_config, method_config


def get_config(arg=None):
  config, words = method_config('swav', arg)
  imagenet = words['imagenet']
  config.train.batch_size = 256 if imagenet else 512
  config.train.epochs = 400 if imagenet else 1000
  config.optim.update(name='lars', base_learning_rate=0.6, weight_decay=1e-6, warmup_epochs=10.0)
  return finish_method_config(config, words)
