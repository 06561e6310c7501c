"""The encoder ``x ↦ (h, z[, p])``: backbone + projector (+ BYOL predictor, + SwAV prototypes).

Assembled from the ``config.model`` sub-tree (an ``ml_collections.ConfigDict``)::

    config = default_model_config('byol', arch='resnet18')
    encoder = build_encoder(config, rngs=nnx.Rngs(0))
    out = encoder(images)          # {'h': [B, 512], 'z': [B, 256], 'p': [B, 256]}

Fields of the model config:

- ``arch``: ``'resnet18' | 'resnet34' | 'resnet50' | 'resnet_tiny'``.
- ``stem``: ``'cifar' | 'imagenet'``; ``width_multiplier`` (int ≥ 1); ``zero_init_residual``.
- ``head``: ``'simclr' | 'byol' | 'barlow_twins' | 'swav' | 'none'`` — which projector.
- ``projector_hidden_dim``, ``projection_dim``: projector sizes.
- ``predictor_hidden_dim``: ``> 0`` adds a predictor ``projection_dim → hidden → projection_dim``
  (required by ``'byol'``); ``0`` for none (ConfigDict fields keep one type, so 0, not None).
- ``num_prototypes``: SwAV's ``K`` (required by ``'swav'``, ignored otherwise).
- ``dtype``: compute dtype ``'float32' | 'bfloat16'``; parameters and BatchNorm statistics stay
  float32 (mixed precision).

The EMA target network of BYOL is a second copy of the online encoder's parameters without the
predictor; keeping it is the train state's business, not the model's.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from glf_jax.models import heads
from glf_jax.models.resnet import RESNETS, STEMS

HEADS = ('simclr', 'byol', 'barlow_twins', 'swav', 'none')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

# Each method's paper defaults (SPEC §2); methods built on SimCLR's loss family share its head.
_HEAD_DEFAULTS = {
    'simclr': dict(projector_hidden_dim=2048, projection_dim=128, predictor_hidden_dim=0,
                   num_prototypes=0),
    'byol': dict(projector_hidden_dim=4096, projection_dim=256, predictor_hidden_dim=4096,
                 num_prototypes=0),
    'barlow_twins': dict(projector_hidden_dim=2048, projection_dim=2048, predictor_hidden_dim=0,
                         num_prototypes=0),
    'swav': dict(projector_hidden_dim=2048, projection_dim=128, predictor_hidden_dim=0,
                 num_prototypes=3000),
    'none': dict(projector_hidden_dim=0, projection_dim=0, predictor_hidden_dim=0,
                 num_prototypes=0),
}
# Objective names (glf_jax.losses.glf) whose encoder is another method's: same projector.
_METHOD_HEADS = {'balanced': 'simclr', 'nscl': 'simclr', 'supcon': 'simclr', 'ce': 'none'}


class Encoder(nnx.Module):
  """``backbone`` → ``h``; ``projector(h)`` → ``z``; ``predictor(z)`` → ``p`` when there is one.

  Without a projector, ``z`` is ``h`` (the "no projection head" setting of SimCLR's ablation).
  A SwAV projector (:class:`heads.SwAVHead`) carries the prototypes: :attr:`prototypes`.
  """

  def __init__(self, backbone: nnx.Module, projector: nnx.Module | None = None,
               predictor: nnx.Module | None = None):
    self.backbone = backbone
    self.projector = projector
    self.predictor = predictor
    self.feature_dim = backbone.feature_dim
    self.projection_dim = projector.out_dim if projector is not None else self.feature_dim

  @property
  def prototypes(self) -> nnx.Param | None:
    """SwAV's prototype parameter ``[K, projection_dim]``, or None for other heads."""
    return getattr(self.projector, 'prototypes', None)

  def __call__(self, x) -> dict[str, Any]:
    h = self.backbone(x)
    z = self.projector(h) if self.projector is not None else h
    out = {'h': h, 'z': z}
    if self.predictor is not None:
      out['p'] = self.predictor(z)
    return out


def _choice(name: str, value: Any, allowed) -> Any:
  if value not in allowed:
    raise ValueError(f'model.{name} must be one of {sorted(allowed)}, got {value!r}')
  return value


def _positive_int(config, name: str) -> int:
  value = config[name]
  if isinstance(value, bool) or int(value) != value or value < 1:
    raise ValueError(f'model.{name} must be an int >= 1 for head {config.head!r}, got {value!r}')
  return int(value)


def build_encoder(model_config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> Encoder:
  """The :class:`Encoder` that ``model_config`` describes (see the module docstring)."""
  c = model_config
  arch = _choice('arch', c.arch, RESNETS)
  stem = _choice('stem', c.stem, STEMS)
  head = _choice('head', c.head, HEADS)
  dtype = DTYPES[_choice('dtype', c.dtype, DTYPES)]
  width = c.width_multiplier
  if isinstance(width, bool) or int(width) != width or width < 1:
    raise ValueError(f'model.width_multiplier must be an int >= 1, got {width!r}')
  predictor_hidden = c.get('predictor_hidden_dim', 0) or 0
  if predictor_hidden < 0:
    raise ValueError(f'model.predictor_hidden_dim must be >= 0 (0: no predictor), '
                     f'got {predictor_hidden!r}')
  if head == 'byol' and predictor_hidden == 0:
    raise ValueError('head byol needs a predictor: set model.predictor_hidden_dim > 0')

  dtypes = dict(dtype=dtype, param_dtype=jnp.float32)
  backbone = RESNETS[arch](stem=stem, width_multiplier=int(width),
                           zero_init_residual=bool(c.zero_init_residual), rngs=rngs, **dtypes)
  d = backbone.feature_dim
  if head == 'none':
    projector = None
  else:
    hidden, out = _positive_int(c, 'projector_hidden_dim'), _positive_int(c, 'projection_dim')
    if head == 'simclr':
      projector = heads.simclr_projector(d, hidden, out, rngs=rngs, **dtypes)
    elif head == 'byol':
      projector = heads.byol_projector(d, hidden, out, rngs=rngs, **dtypes)
    elif head == 'barlow_twins':
      projector = heads.barlow_twins_projector(d, hidden, out, rngs=rngs, **dtypes)
    else:  # swav
      projector = heads.SwAVHead(d, hidden, out, _positive_int(c, 'num_prototypes'), rngs=rngs,
                                 **dtypes)
  predictor = None
  if predictor_hidden > 0:
    z_dim = projector.out_dim if projector is not None else d
    predictor = heads.byol_predictor(z_dim, int(predictor_hidden), z_dim, rngs=rngs, **dtypes)
  return Encoder(backbone, projector, predictor)


def default_model_config(method: str = 'simclr', arch: str = 'resnet18', *,
                         stem: str = 'cifar') -> ml_collections.ConfigDict:
  """``config.model`` with ``method``'s paper defaults (SPEC §2).

  ``method`` is a head name (``simclr``, ``byol``, ``barlow_twins``, ``swav``, ``none``) or an
  objective name of ``glf_jax.losses.glf``: ``'simclr+adc'`` → ``simclr``; ``balanced``,
  ``nscl``, ``supcon`` → ``simclr``'s projector; ``ce`` → ``none``.
  """
  base = method.split('+')[0]
  head = _METHOD_HEADS.get(base, base)
  if head not in _HEAD_DEFAULTS:
    raise ValueError(f'method must be one of {sorted(set(_HEAD_DEFAULTS) | set(_METHOD_HEADS))} '
                     f'(optionally with "+<constraint>"), got {method!r}')
  _choice('arch', arch, RESNETS)
  _choice('stem', stem, STEMS)
  return ml_collections.ConfigDict(dict(
      arch=arch,
      stem=stem,
      width_multiplier=1,
      zero_init_residual=False,
      head=head,
      dtype='float32',
      **_HEAD_DEFAULTS[head],
  ))


def count_params(module_or_state) -> int:
  """Number of trainable parameter entries (``nnx.Param``; BatchNorm statistics not counted).

  Accepts a module (also one from ``nnx.eval_shape``: nothing is allocated), an ``nnx.State``
  (filtered to ``nnx.Param``), or any pytree of arrays, which is counted whole.
  """
  if isinstance(module_or_state, nnx.Module):
    tree = nnx.state(module_or_state, nnx.Param)
  elif isinstance(module_or_state, nnx.State):
    tree = nnx.filter_state(module_or_state, nnx.Param)
  else:
    tree = module_or_state
  # ``shape`` also covers the ShapeDtypeStructs of an abstract (eval_shape) model.
  return sum(math.prod(getattr(x, 'shape', np.shape(x))) for x in jax.tree.leaves(tree))
