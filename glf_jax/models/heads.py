"""Projectors, the BYOL predictor and SwAV prototypes (SPEC §2), in Flax NNX.

Every head is an :class:`MLPHead` — ``Linear → BatchNorm → ReLU`` per hidden layer, then a final
``Linear`` — with each paper's default sizes:

- SimCLR (Chen et al. 2020, arXiv 2002.05709): 2 layers, ``in → 2048 → 128`` (solo-learn's CIFAR
  setting; the paper's ResNet-50 uses the feature width as hidden size).
- BYOL (Grill et al. 2020, arXiv 2006.07733, §3.3): projector and predictor ``→ 4096 → 256``.
- Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230): 3 layers of 8192 on ImageNet; our
  default is 2048 (solo-learn's CIFAR setting); the last layer has no bias, as in the official code.
- SwAV (Caron et al. 2020, arXiv 2006.09882): ``→ 2048 → 128`` and ``K = 3000`` prototypes.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class MLPHead(nnx.Module):
  """``Linear → [BN] → ReLU`` for each of ``hidden_dims``, then ``Linear → [BN]``.

  Args:
    in_dim: input width (the backbone's ``feature_dim``).
    hidden_dims: widths of the hidden layers; ``()`` gives a single linear map.
    out_dim: output width.
    use_bn: BatchNorm after each hidden Linear (its bias is then dropped: BN's shift replaces it).
    last_bn: BatchNorm after the output Linear too (SimCLR v2's projector; off by default).
    last_bias: bias on the output Linear (ignored with ``last_bn``).
    bn_momentum, bn_epsilon: as for the backbone's BatchNorm.
    dtype, param_dtype: computation and parameter dtypes.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, *, use_bn: bool = True,
               last_bn: bool = False, last_bias: bool = True, bn_momentum: float = 0.9,
               bn_epsilon: float = 1e-5, dtype: Any = jnp.float32, param_dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    for name, value in (('in_dim', in_dim), ('out_dim', out_dim), *(
        (f'hidden_dims[{i}]', h) for i, h in enumerate(hidden_dims))):
      if int(value) != value or value < 1:
        raise ValueError(f'{name} must be an int >= 1, got {value!r}')
    linear = functools.partial(nnx.Linear, dtype=dtype, param_dtype=param_dtype)
    norm = functools.partial(nnx.BatchNorm, momentum=bn_momentum, epsilon=bn_epsilon, dtype=dtype,
                             param_dtype=param_dtype)
    self.in_dim, self.out_dim = int(in_dim), int(out_dim)
    self.hidden_dims = tuple(int(h) for h in hidden_dims)
    self.dtype = dtype

    hidden_linears, hidden_norms = [], []
    width = self.in_dim
    for h in self.hidden_dims:
      hidden_linears.append(linear(width, h, use_bias=not use_bn, rngs=rngs))
      hidden_norms.append(norm(h, rngs=rngs) if use_bn else None)
      width = h
    self.hidden_linears = nnx.List(hidden_linears)
    self.hidden_norms = nnx.List(hidden_norms)
    self.output_linear = linear(width, self.out_dim, use_bias=last_bias and not last_bn, rngs=rngs)
    self.output_norm = norm(self.out_dim, rngs=rngs) if last_bn else None

  def __call__(self, x):
    for layer, norm in zip(self.hidden_linears, self.hidden_norms):
      x = layer(x)
      if norm is not None:
        x = norm(x)
      x = nnx.relu(x)
    x = self.output_linear(x)
    if self.output_norm is not None:
      x = self.output_norm(x)
    return x


def simclr_projector(in_dim: int, hidden: int = 2048, out: int = 128, **kw) -> MLPHead:
  """SimCLR's 2-layer projector ``g``: ``in → hidden → out`` (Chen et al. 2020, §2.1).

  With BatchNorm after the hidden layer, as in the official TF code and solo-learn (the paper
  writes ``g(h) = W2 σ(W1 h)``); pass ``use_bn=False`` for the equation's form.
  """
  return MLPHead(in_dim, (hidden,), out, **kw)


def byol_projector(in_dim: int, hidden: int = 4096, out: int = 256, **kw) -> MLPHead:
  """BYOL's projector ``g_θ``: ``in → 4096 (BN, ReLU) → 256`` (Grill et al. 2020, §3.3)."""
  return MLPHead(in_dim, (hidden,), out, **kw)


def byol_predictor(in_dim: int = 256, hidden: int = 4096, out: int = 256, **kw) -> MLPHead:
  """BYOL's predictor ``q_θ``: same architecture as the projector, on its output."""
  return MLPHead(in_dim, (hidden,), out, **kw)


def barlow_twins_projector(in_dim: int, hidden: int = 2048, out: int = 2048, **kw) -> MLPHead:
  """Barlow Twins' projector: 3 linear layers, BN + ReLU between, no bias on the last."""
  kw.setdefault('last_bias', False)
  return MLPHead(in_dim, (hidden, hidden), out, **kw)


class SwAVHead(nnx.Module):
  """SwAV projector ``in → hidden → out`` plus ``K`` prototypes ``C [K, out]`` (Caron et al. 2020).

  ``__call__`` returns the projection ``z`` only; the loss ``glf_jax.losses.swav(z1, z2, C)``
  normalises ``z`` and computes the scores ``z Cᵀ``. The prototype rows start ℓ2-normalised; the
  training step re-normalises them after every update with :func:`l2_normalize_rows` (SPEC §2),
  and freezes them during the first epoch.
  """

  def __init__(self, in_dim: int, hidden: int = 2048, out: int = 128, num_prototypes: int = 3000,
               *, dtype: Any = jnp.float32, param_dtype: Any = jnp.float32, rngs: nnx.Rngs, **kw):
    if int(num_prototypes) != num_prototypes or num_prototypes < 1:
      raise ValueError(f'num_prototypes must be an int >= 1, got {num_prototypes!r}')
    self.projector = MLPHead(in_dim, (hidden,), out, dtype=dtype, param_dtype=param_dtype,
                             rngs=rngs, **kw)
    self.out_dim = self.projector.out_dim
    self.num_prototypes = int(num_prototypes)
    prototypes = jax.random.normal(rngs.params(), (self.num_prototypes, out), param_dtype)
    self.prototypes = nnx.Param(l2_normalize_rows(prototypes))

  def normalize_prototypes(self) -> jax.Array:
    """The prototypes with ℓ2-normalised rows (a new array; the parameter is not modified)."""
    return l2_normalize_rows(self.prototypes[...])

  def __call__(self, x):
    return self.projector(x)


def l2_normalize_rows(c, eps=1e-12):
  """``c`` with unit-ℓ2 rows (norms computed in float32, at least ``eps``), in ``c``'s dtype."""
  norm = jnp.sqrt(jnp.sum(jnp.square(c.astype(jnp.float32)), axis=-1, keepdims=True))
  return (c / jnp.maximum(norm, eps).astype(c.dtype)).astype(c.dtype)
