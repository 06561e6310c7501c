"""W-MSE (Ermolov et al. 2021) on CIFAR-10/100 or ImageNet-100, ResNet-18/50.

    python -m glf_jax.main --config configs/wmse.py --workdir runs/c10_wmse
    python -m glf_jax.main --config configs/wmse.py:cifar100,adc --workdir runs/c100_wmse_adc
    python -m glf_jax.main --config configs/wmse.py:imagenet100,resnet50 --workdir runs/in100_wmse
    python -m glf_jax.main --config configs/wmse.py:tiny --workdir /tmp/wmse_tiny   # a minute, offline

Words after ``:`` (``glf_jax.config.method_config``): a dataset (``cifar10``, the default,
``cifar100``, ``imagenet100``, ``digits``), ``resnet50``, ``adc`` (ADC as its paper runs it) and
``tiny`` (the small-run switch; digits unless a dataset is named). The experiment's numbers are
below; the method's own (loss, heads) are its definition in ``glf_jax/methods/wmse.py``.
For a pod, raise only ``train.batch_size`` (``method_config``'s docstring says how).

solo-learn's CIFAR W-MSE: Adam(W) 2e-3 · batch / 256, projector 1024 → 64, whitening sub-batches of
128, one partition per step, random crops of at least 20% of the image.
"""

from glf_jax.config import finish_method_config, method_config


def get_config(arg=None):
  config, words = method_config('wmse', arg)
  imagenet = words['imagenet']
  config.train.batch_size = 256 if imagenet else 512
  config.train.epochs = 400 if imagenet else 1000
  config.optim.update(name='adamw', base_learning_rate=2e-3, weight_decay=1e-6,
                      warmup_epochs=10.0)
  for view in (config.augment.view1, config.augment.view2):
    view.crop_scale = (0.2, 1.0)
  return finish_method_config(config, words)
