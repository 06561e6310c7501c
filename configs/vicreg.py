"""VICReg (Bardes, Ponce & LeCun 2022) on CIFAR-10/100 or ImageNet-100, ResNet-18/50.

    python -m glf_jax.main --config configs/vicreg.py --workdir runs/c10_vicreg
    python -m glf_jax.main --config configs/vicreg.py:cifar100,adc --workdir runs/c100_vicreg_adc
    python -m glf_jax.main --config configs/vicreg.py:imagenet100,resnet50 --workdir runs/in100_vicreg
    python -m glf_jax.main --config configs/vicreg.py:tiny --workdir /tmp/vicreg_tiny   # a minute, offline

Words after ``:`` (``glf_jax.config.method_config``): a dataset (``cifar10``, the default,
``cifar100``, ``imagenet100``, ``digits``), ``resnet50``, ``adc`` (ADC as its paper runs it) and
``tiny`` (the small-run switch; digits unless a dataset is named). The experiment's numbers are
below; the method's own (loss, heads) are its definition in ``glf_jax/methods/vicreg.py``.
For a pod, raise only ``train.batch_size`` (``method_config``'s docstring says how).

solo-learn's recipe: LARS 0.3 · batch / 256 (trust coefficient 0.02), weight decay 1e-4, batch
256, 1000 epochs on CIFAR (400 on ImageNet-100), 10 warm-up epochs; BYOL's views with crops of at
least 20% of the image, solarisation 0.1 on both views, and no blur on CIFAR.
"""

from glf_jax.config import finish_method_config, method_config


def get_config(arg=None):
  config, words = method_config('vicreg', arg)
  imagenet = words['imagenet']
  config.train.batch_size = 256
  config.train.epochs = 400 if imagenet else 1000
  config.optim.update(name='lars', base_learning_rate=0.3, weight_decay=1e-4, warmup_epochs=10.0)
  for view in (config.augment.view1, config.augment.view2):
    view.crop_scale = (0.2, 1.0)
    view.solarize_prob = 0.1
    if not imagenet:
      view.blur_prob = 0.0
  return finish_method_config(config, words)
