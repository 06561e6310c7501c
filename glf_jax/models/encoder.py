"""The encoder ``x ↦ {h, z[, p][, logits]}``: backbone + projector (+ predictor, prototypes,
classifier), assembled from the ``config.model`` sub-tree alone.

    config = default_model_config('resnet18', predictor_layers=2, predictor_hidden_dim=4096)
    encoder = build_encoder(config, rngs=nnx.Rngs(0))
    out = encoder(images)          # {'h': [B, 512], 'z': [B, 128], 'p': [B, 128]}

Fields of the model config (every method declares its own head sizes, ``glf_jax.methods``):

- ``arch``: ``'resnet18' | 'resnet34' | 'resnet50' | 'resnet_tiny'``; ``stem``: ``'cifar' |
  'imagenet'``; ``width_multiplier`` (int ≥ 1); ``zero_init_residual``.
- ``projector_layers`` (0: no projector, ``z = h``), ``projector_hidden_dim``,
  ``projection_dim``, ``projector_last_bn`` (affine-free BatchNorm on ``z``),
  ``projector_last_bias``.
- ``predictor_layers`` (0: no predictor), ``predictor_hidden_dim``: ``p = q(z)``, width of ``z``.
- ``num_prototypes``: SwAV's ``K`` ℓ2-normalised prototype rows (0: none).
- ``num_classes``: a linear classifier on ``h`` giving ``logits`` (0: none; the supervised
  cross-entropy method).
- ``dtype``: compute dtype ``'float32' | 'bfloat16'``; parameters and BatchNorm statistics stay
  float32 (mixed precision).

Parameters are drawn in the order backbone, projector, predictor, prototypes (the classifier is
zero-initialised): encoders that differ only in later parts share the earlier ones for a seed —
SimCLR, NSCL, SupCon and cross-entropy runs start from one backbone and projector.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from glf_jax.losses.similarity import l2_normalize
from glf_jax.models import heads
from glf_jax.models.resnet import RESNETS, STEMS

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class Encoder(nnx.Module):
  """``backbone`` → ``h``; ``projector(h)`` → ``z``; ``predictor(z)`` → ``p``; ``classifier(h)``.

  Without a projector, ``z`` is ``h`` (the "no projection head" setting of SimCLR's ablation).
  ``prototypes`` (SwAV) is a parameter ``[K, projection_dim]`` read by the method, not called.
  """

  def __init__(self, backbone: nnx.Module, projector: nnx.Module | None = None,
               predictor: nnx.Module | None = None, prototypes: jax.Array | None = None,
               classifier: nnx.Module | None = None):
    self.backbone = backbone
    self.projector = projector
    self.predictor = predictor
    self.prototypes = nnx.Param(prototypes) if prototypes is not None else None
    self.classifier = classifier
    self.feature_dim = backbone.feature_dim
    self.projection_dim = projector.out_dim if projector is not None else self.feature_dim

  def embed(self, x) -> dict[str, Any]:
    """``{'h', 'z'}``: what a momentum (EMA) copy of the encoder computes."""
    h = self.backbone(x)
    return {'h': h, 'z': self.projector(h) if self.projector is not None else h}

  def __call__(self, x) -> dict[str, Any]:
    out = self.embed(x)
    if self.predictor is not None:
      out['p'] = self.predictor(out['z'])
    if self.classifier is not None:
      out['logits'] = self.classifier(out['h'])
    return out


def split_encoder(encoder: nnx.Module):
  """``(train_graphdef, eval_graphdef, params, batch_stats)`` of an encoder.

  BatchNorm's mode is static (part of the graph definition), so the train and eval forms of the
  same encoder are two graphdefs over one state.
  """
  encoder.train()
  train_graphdef, params, batch_stats = nnx.split(encoder, nnx.Param, nnx.BatchStat)
  encoder.eval()
  eval_graphdef, _, _ = nnx.split(encoder, nnx.Param, nnx.BatchStat)
  encoder.train()
  return train_graphdef, eval_graphdef, params, batch_stats


def _choice(name: str, value: Any, allowed) -> Any:
  if value not in allowed:
    raise ValueError(f'model.{name} must be one of {sorted(allowed)}, got {value!r}')
  return value


def _int(config, name: str, minimum: int) -> int:
  value = config[name]
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f'model.{name} must be an int >= {minimum}, got {value!r}')
  return value


def build_encoder(model_config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> Encoder:
  """The :class:`Encoder` that ``model_config`` describes (see the module docstring)."""
  c = model_config
  arch = _choice('arch', c.arch, RESNETS)
  stem = _choice('stem', c.stem, STEMS)
  dtype = DTYPES[_choice('dtype', c.dtype, DTYPES)]
  dtypes = dict(dtype=dtype, param_dtype=jnp.float32)
  backbone = RESNETS[arch](stem=stem, width_multiplier=_int(c, 'width_multiplier', 1),
                           zero_init_residual=bool(c.zero_init_residual), rngs=rngs, **dtypes)
  width = backbone.feature_dim
  projector = predictor = prototypes = classifier = None
  if _int(c, 'projector_layers', 0):
    projector = heads.mlp_head(
        width, num_layers=c.projector_layers, hidden_dim=_int(c, 'projector_hidden_dim', 1),
        out_dim=_int(c, 'projection_dim', 1), last_bn=bool(c.projector_last_bn),
        last_bias=bool(c.projector_last_bias), rngs=rngs, **dtypes)
    width = projector.out_dim
  if _int(c, 'predictor_layers', 0):
    predictor = heads.mlp_head(width, num_layers=c.predictor_layers,
                               hidden_dim=_int(c, 'predictor_hidden_dim', 1), out_dim=width,
                               rngs=rngs, **dtypes)
  if _int(c, 'num_prototypes', 0):
    prototypes = l2_normalize(jax.random.normal(rngs.params(), (c.num_prototypes, width)))
  if _int(c, 'num_classes', 0):
    classifier = heads.LinearHead(backbone.feature_dim, c.num_classes, dtype=dtype)
  return Encoder(backbone, projector, predictor, prototypes, classifier)


def default_model_config(arch: str = 'resnet18', *, stem: str = 'cifar',
                         **heads_config) -> ml_collections.ConfigDict:
  """``config.model``: a SimCLR-sized projector and no other head, unless ``heads_config``
  overrides fields (each method passes its own, ``glf_jax.methods``)."""
  _choice('arch', arch, RESNETS)
  _choice('stem', stem, STEMS)
  config = ml_collections.ConfigDict(dict(
      arch=arch,
      stem=stem,
      width_multiplier=1,
      zero_init_residual=False,
      dtype='float32',
      projector_layers=2,
      projector_hidden_dim=2048,
      projection_dim=128,
      projector_last_bn=False,
      projector_last_bias=True,
      predictor_layers=0,
      predictor_hidden_dim=4096,
      num_prototypes=0,
      num_classes=0,
  ))
  unknown = sorted(set(heads_config) - set(config))
  if unknown:
    raise ValueError(f'unknown model field(s) {unknown}; allowed: {sorted(config)}')
  config.update(heads_config)
  return config
