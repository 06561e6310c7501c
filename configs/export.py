"""Export a run's backbone as a torchvision ResNet state dict (safetensors) and its description.

    python -m glf_jax.main --config configs/export.py \
        --config.eval.checkpoint_dir=runs/cifar10_simclr --workdir runs/cifar10_simclr/export

writes ``encoder_torchvision.safetensors`` (the ResNet-18/34/50 backbone as torchvision names it,
without ``fc``; heads are not exported) and ``encoder_torchvision.json`` (architecture, stem,
feature size, input size and normalisation, source run and step, and the torch lines that build
the matching module) to the workdir. Only ``model.arch`` resnet18 / resnet34 / resnet50 with
``width_multiplier=1`` have a torchvision counterpart. A CIFAR-stem run differs from
``torchvision.models.resnet18()`` in its stem: ``conv1`` is 3×3 stride 1 padding 1 and there is
no max-pool (the JSON gives the two lines that change it). The exported file loads back here as
``--config.prior.kind=torchvision --config.prior.path=...`` or as ``eval.checkpoint_dir``.
"""

from glf_jax.config import base_config


def get_config():
  config = base_config('simclr', 'cifar10')
  config.mode = 'export'
  return config
