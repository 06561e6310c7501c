"""ResNet v1.5 backbones in Flax NNX, without a classifier.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv 1512.03385), in the
"v1.5" layout of torchvision and NVIDIA (also Goyal et al., arXiv 1706.02677): a bottleneck block
downsamples in its 3×3 convolution, not in the first 1×1. Structured like the
Flax ``examples/imagenet/models.py``: blocks receive ``conv`` and ``norm`` factories
(``functools.partial``) so that dtype, initialisers and BatchNorm settings are fixed in one place.

Two stems:

- ``'imagenet'``: 7×7/2 convolution + 3×3/2 max-pool (224 px inputs → 56 px at stage 1).
- ``'cifar'``: 3×3/1 convolution, no max-pool — the stem SimCLR (Chen et al. 2020, appendix B.9)
  and solo-learn use for 32 px images, where the ImageNet stem would discard most of the image.

``__call__`` returns the globally average-pooled features ``h`` (docs/maths.md §0), ``[B, feature_dim]``.
Train / eval behaviour is NNX's mode: ``model.train()`` normalises with batch statistics and
updates the running averages (``nnx.BatchStat``); ``model.eval()`` uses the running averages.
Under ``jax.jit`` with the batch sharded over a mesh, the batch statistics are reductions over the
global batch (XLA inserts the cross-device sums), i.e. BatchNorm is synchronised across devices.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax.numpy as jnp
from flax import nnx

ModuleDef = Any

# torchvision's ``kaiming_normal_(mode='fan_out', nonlinearity='relu')``: N(0, 2 / fan_out), not
# truncated, fan_out = kh·kw·out_channels.
conv_kernel_init = nnx.initializers.variance_scaling(2.0, 'fan_out', 'normal')

STEMS = ('cifar', 'imagenet')
BLOCKS = ('basic', 'bottleneck')


def conv2d(in_features: int, out_features: int, kernel_size: int, strides: int = 1, *,
           rngs: nnx.Rngs, **kwargs) -> nnx.Conv:
  """Square ``kernel_size`` convolution with symmetric ``kernel_size // 2`` padding, no bias."""
  # Symmetric padding as in PyTorch: Flax's 'SAME' pads stride-2 convolutions of even-sized inputs
  # asymmetrically (0, 1), which shifts the sampling grid by a pixel and would make weights
  # imported from torchvision compute something slightly different. No bias: BatchNorm follows.
  pad = kernel_size // 2
  return nnx.Conv(in_features, out_features, (kernel_size, kernel_size), (strides, strides),
                  padding=((pad, pad), (pad, pad)), use_bias=False, rngs=rngs, **kwargs)


class _ResidualBlock(nnx.Module):
  """``relu(shortcut(x) + residual(x))``; subclasses build the layers and define ``residual``."""

  def residual(self, x):
    raise NotImplementedError

  def shortcut(self, x):
    if self.shortcut_conv is None:
      return x
    return self.shortcut_norm(self.shortcut_conv(x))

  def __call__(self, x):
    return nnx.relu(self.shortcut(x) + self.residual(x))


class BasicBlock(_ResidualBlock):
  """Two 3×3 convolutions (ResNet-18/34). ``expansion = 1``."""

  expansion = 1

  def __init__(self, in_features: int, filters: int, *, strides: int, conv: ModuleDef,
               norm: ModuleDef, zero_init_residual: bool, rngs: nnx.Rngs):
    out_features = filters * self.expansion
    self.conv1 = conv(in_features, filters, 3, strides, rngs=rngs)
    self.norm1 = norm(filters, rngs=rngs)
    self.conv2 = conv(filters, out_features, 3, 1, rngs=rngs)
    # Zero scale makes the residual branch output 0 at init, so the block starts as the identity
    # (Goyal et al. 2017); helps large-batch training.
    self.norm2 = norm(out_features, rngs=rngs, **_last_norm_kwargs(zero_init_residual))
    self.shortcut_conv, self.shortcut_norm = _projection_shortcut(
        in_features, out_features, strides, conv, norm, rngs)

  @property
  def last_norm(self) -> nnx.BatchNorm:
    """The BatchNorm closing the residual branch (zero scale with ``zero_init_residual``)."""
    return self.norm2

  def residual(self, x):
    y = nnx.relu(self.norm1(self.conv1(x)))
    return self.norm2(self.conv2(y))


class BottleneckBlock(_ResidualBlock):
  """1×1 reduce, 3×3 (strided: v1.5), 1×1 expand ×4 (ResNet-50 and deeper). ``expansion = 4``."""

  expansion = 4

  def __init__(self, in_features: int, filters: int, *, strides: int, conv: ModuleDef,
               norm: ModuleDef, zero_init_residual: bool, rngs: nnx.Rngs):
    out_features = filters * self.expansion
    self.conv1 = conv(in_features, filters, 1, 1, rngs=rngs)
    self.norm1 = norm(filters, rngs=rngs)
    self.conv2 = conv(filters, filters, 3, strides, rngs=rngs)
    self.norm2 = norm(filters, rngs=rngs)
    self.conv3 = conv(filters, out_features, 1, 1, rngs=rngs)
    self.norm3 = norm(out_features, rngs=rngs, **_last_norm_kwargs(zero_init_residual))
    self.shortcut_conv, self.shortcut_norm = _projection_shortcut(
        in_features, out_features, strides, conv, norm, rngs)

  @property
  def last_norm(self) -> nnx.BatchNorm:
    """The BatchNorm closing the residual branch (zero scale with ``zero_init_residual``)."""
    return self.norm3

  def residual(self, x):
    y = nnx.relu(self.norm1(self.conv1(x)))
    y = nnx.relu(self.norm2(self.conv2(y)))
    return self.norm3(self.conv3(y))


def _last_norm_kwargs(zero_init_residual: bool) -> dict:
  return {'scale_init': nnx.initializers.zeros_init()} if zero_init_residual else {}


def _projection_shortcut(in_features, out_features, strides, conv, norm, rngs):
  """1×1 strided conv + BN where the shape changes (He et al.'s option B), else identity."""
  if strides == 1 and in_features == out_features:
    return None, None
  return (conv(in_features, out_features, 1, strides, rngs=rngs),
          norm(out_features, rngs=rngs))


BLOCK_CLASSES = {'basic': BasicBlock, 'bottleneck': BottleneckBlock}


class ResNet(nnx.Module):
  """ResNet v1.5 backbone: stem, ``len(stage_sizes)`` stages, global average pool; no classifier.

  Args:
    stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18. Stage ``i`` has
      ``num_filters · width_multiplier · 2^i`` filters; every stage after the first halves the
      spatial size in its first block.
    block: ``'basic'`` (two 3×3) or ``'bottleneck'`` (1×1, 3×3, 1×1 with expansion 4).
    num_filters: filters of the stem and the first stage (64 in the paper).
    width_multiplier: multiplies every layer's width, stem included, as in SimCLR's ResNet-50
      (2×, 4×); so ``feature_dim`` is 512·w (basic) or 2048·w (bottleneck) for four stages.
    stem: ``'cifar'`` (3×3/1 conv, no pool) or ``'imagenet'`` (7×7/2 conv + 3×3/2 max-pool).
    zero_init_residual: initialise the scale of each block's last BatchNorm to zero.
    dtype: computation dtype (activations), e.g. ``jnp.bfloat16``. BatchNorm statistics are
      computed in at least float32 regardless.
    param_dtype: parameter dtype; keep float32 for mixed precision.
    bn_momentum: running-average decay (0.9 = PyTorch's ``momentum=0.1``).
    bn_epsilon: BatchNorm epsilon (PyTorch's default).
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, stage_sizes: Sequence[int], block: str = 'basic', *, num_filters: int = 64,
               width_multiplier: int = 1, stem: str = 'cifar', zero_init_residual: bool = False,
               dtype: Any = jnp.float32, param_dtype: Any = jnp.float32, bn_momentum: float = 0.9,
               bn_epsilon: float = 1e-5, rngs: nnx.Rngs):
    if block not in BLOCK_CLASSES:
      raise ValueError(f'block must be one of {BLOCKS}, got {block!r}')
    if stem not in STEMS:
      raise ValueError(f'stem must be one of {STEMS}, got {stem!r}')
    if not stage_sizes or any(int(n) < 1 for n in stage_sizes):
      raise ValueError(f'stage_sizes must be a non-empty list of ints >= 1, got {stage_sizes!r}')
    if int(width_multiplier) != width_multiplier or width_multiplier < 1:
      raise ValueError(f'width_multiplier must be an int >= 1, got {width_multiplier!r}')
    self.stage_sizes = tuple(int(n) for n in stage_sizes)
    self.block = block
    self.stem = stem
    self.dtype = dtype

    conv = functools.partial(conv2d, kernel_init=conv_kernel_init, dtype=dtype,
                             param_dtype=param_dtype)
    norm = functools.partial(nnx.BatchNorm, momentum=bn_momentum, epsilon=bn_epsilon, dtype=dtype,
                             param_dtype=param_dtype)
    block_cls = BLOCK_CLASSES[block]

    width = num_filters * int(width_multiplier)
    if stem == 'imagenet':
      self.stem_conv = conv(3, width, 7, 2, rngs=rngs)
    else:
      self.stem_conv = conv(3, width, 3, 1, rngs=rngs)
    self.stem_norm = norm(width, rngs=rngs)

    stages = []
    in_features = width
    for i, num_blocks in enumerate(self.stage_sizes):
      filters = width * 2**i
      blocks = []
      for j in range(num_blocks):
        strides = 2 if i > 0 and j == 0 else 1
        blocks.append(block_cls(in_features, filters, strides=strides, conv=conv, norm=norm,
                                zero_init_residual=zero_init_residual, rngs=rngs))
        in_features = filters * block_cls.expansion
      stages.append(nnx.List(blocks))
    self.stages = nnx.List(stages)
    self.feature_dim = in_features

  def __call__(self, x):
    """``x [B, H, W, 3]`` float images (NHWC) → pooled features ``h [B, feature_dim]``."""
    x = nnx.relu(self.stem_norm(self.stem_conv(x)))
    if self.stem == 'imagenet':
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))  # PyTorch's padding=1
    for stage in self.stages:
      for block in stage:
        x = block(x)
    # Average in float32 (a bf16 sum over 7×7 or 4×4 positions loses precision), return in dtype.
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)


def _factory(name: str, stage_sizes: Sequence[int], block: str,
             **defaults) -> Callable[..., ResNet]:
  def make(**kw) -> ResNet:
    return ResNet(**{'stage_sizes': stage_sizes, 'block': block, **defaults, **kw})
  make.__name__ = make.__qualname__ = name
  make.__doc__ = (f'{name}: ``ResNet({list(stage_sizes)}, {block!r}, **kw)``; keyword arguments as '
                  f'for :class:`ResNet` (``rngs`` required).')
  return make


resnet18 = _factory('resnet18', (2, 2, 2, 2), 'basic')
resnet34 = _factory('resnet34', (3, 4, 6, 3), 'basic')
resnet50 = _factory('resnet50', (3, 4, 6, 3), 'bottleneck')
# Two stages of one basic block, 8 filters: feature_dim 16. For tests and smoke runs.
resnet_tiny = _factory('resnet_tiny', (1, 1), 'basic', num_filters=8)
# Four stages of one basic block, 16 filters: feature_dim 128. The studies' CIFAR network on a CPU
# (configs/studies/cifar10.py: chosen by a calibration of accuracy against cost).
resnet_small = _factory('resnet_small', (1, 1, 1, 1), 'basic', num_filters=16)

RESNETS: dict[str, Callable[..., ResNet]] = {
    'resnet18': resnet18,
    'resnet34': resnet34,
    'resnet50': resnet50,
    'resnet_tiny': resnet_tiny,
    'resnet_small': resnet_small,
}
