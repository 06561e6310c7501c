"""SimCLR (NT-Xent, Chen et al. 2020) on CIFAR-10/100 or ImageNet-100, ResNet-18/50.

    python -m glf_jax.main --config configs/simclr.py --workdir runs/c10_simclr
    python -m glf_jax.main --config configs/simclr.py:cifar100,adc --workdir runs/c100_simclr_adc
    python -m glf_jax.main --config configs/simclr.py:imagenet100,resnet50 --workdir runs/in100_simclr
    python -m glf_jax.main --config configs/simclr.py:tiny --workdir /tmp/simclr_tiny   # a minute, offline

Words after ``:`` (``glf_jax.config.method_config``): a dataset (``cifar10``, the default,
``cifar100``, ``imagenet100``, ``digits``), ``resnet50``, ``adc`` (ADC as its paper runs it) and
``tiny`` (the small-run switch; digits unless a dataset is named). The experiment's numbers are
below; the method's own (loss, heads) are its definition in ``glf_jax/methods/simclr.py``.
For a pod, raise only ``train.batch_size`` (``method_config``'s docstring says how).

``simclr_recipe`` is solo-learn's tuned CIFAR ResNet-18 SimCLR recipe, shared by the contrastive
family's configs (``balanced``, ``nscl``, ``supcon``, ``ce``).
"""

from glf_jax.config import finish_method_config, method_config


def simclr_recipe(config, imagenet):
  """solo-learn's CIFAR recipe: LARS 0.4 · batch / 256, weight decay 1e-5, 10 warm-up epochs of
  1000 (ImageNet-100: batch 256, 400 epochs), projector 2048 → 256."""
  config.train.batch_size = 256 if imagenet else 512
  config.train.epochs = 400 if imagenet else 1000
  config.optim.update(name='lars', base_learning_rate=0.4, weight_decay=1e-5, warmup_epochs=10.0)
  config.model.projection_dim = 256
  return config


def get_config(arg=None):
  config, words = method_config('simclr', arg)
  simclr_recipe(config, words['imagenet'])
  config.objective.simclr.temperature = 0.1 if words['imagenet'] else 0.2
  return finish_method_config(config, words)
