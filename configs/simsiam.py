"""SimSiam (Chen & He 2021) on CIFAR-10/100 or ImageNet-100, ResNet-18/50.

    python -m glf_jax.main --config configs/simsiam.py --workdir runs/c10_simsiam
    python -m glf_jax.main --config configs/simsiam.py:cifar100,adc --workdir runs/c100_simsiam_adc
    python -m glf_jax.main --config configs/simsiam.py:imagenet100,resnet50 --workdir runs/in100_simsiam
    python -m glf_jax.main --config configs/simsiam.py:tiny --workdir /tmp/simsiam_tiny   # a minute, offline

Words after ``:`` (``glf_jax.config.method_config``): a dataset (``cifar10``, the default,
``cifar100``, ``imagenet100``, ``digits``), ``resnet50``, ``adc`` (ADC as its paper runs it) and
``tiny`` (the small-run switch; digits unless a dataset is named). The experiment's numbers are
below; the method's own (loss, heads) are its definition in ``glf_jax/methods/simsiam.py``.
For a pod, raise only ``train.batch_size`` (``method_config``'s docstring says how).

CIFAR: the paper's appendix D optimiser (SGD, 0.03 · batch / 256, weight decay 5e-4, 800 epochs);
ImageNet-100: the paper's ImageNet optimiser (SGD, 0.05 · batch / 256, weight decay 1e-4).
"""

from glf_jax.config import finish_method_config, method_config


def get_config(arg=None):
  config, words = method_config('simsiam', arg)
  imagenet = words['imagenet']
  config.train.batch_size = 256 if imagenet else 512
  config.train.epochs = 400 if imagenet else 800
  config.optim.update(name='sgd', base_learning_rate=0.05 if imagenet else 0.03,
                      weight_decay=1e-4 if imagenet else 5e-4, warmup_epochs=0.0)
  return finish_method_config(config, words)
