"""Heads on the backbone feature ``h``: MLP projectors / predictors and linear classifiers.

* :class:`MLPHead` — ``Linear → BatchNorm → ReLU`` per hidden layer, then a final ``Linear``
  (optionally followed by an affine-free BatchNorm, as SimSiam's and MoCo v3's projectors). Every
  method's projector and predictor is one (each method declares its sizes, ``glf_jax.methods``).
* The linear classifier ``logits = x W + b``, zero-initialised: one set of pure functions
  (:func:`linear_init`, :func:`linear_logits`, :func:`classification_loss`) behind the online probe of
  the train step, the linear probe of the evaluation, and (as :class:`LinearHead`) the head of
  fine-tuning and of the supervised cross-entropy method.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
import optax


class MLPHead(nnx.Module):
  """``Linear → [BN] → ReLU`` for each of ``hidden_dims``, then ``Linear → [BN]``.

  Args:
    in_dim: input width (the backbone's ``feature_dim``).
    hidden_dims: widths of the hidden layers; ``()`` gives a single linear map.
    out_dim: output width.
    use_bn: BatchNorm after each hidden Linear (its bias is then dropped: BN's shift replaces it).
    last_bn: an affine-free BatchNorm after the output Linear (SimSiam, MoCo v3; SimCLR v2).
    last_bias: bias on the output Linear (ignored with ``last_bn``, whose centring removes it).
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
    self.output_norm = (norm(self.out_dim, use_scale=False, use_bias=False, rngs=rngs)
                        if last_bn else None)

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


def mlp_head(in_dim: int, *, num_layers: int, hidden_dim: int, out_dim: int, **kw) -> MLPHead:
  """An :class:`MLPHead` of ``num_layers`` linear layers (``num_layers - 1`` hidden ones)."""
  if isinstance(num_layers, bool) or int(num_layers) != num_layers or num_layers < 1:
    raise ValueError(f'num_layers must be an int >= 1, got {num_layers!r}')
  return MLPHead(in_dim, (hidden_dim,) * (int(num_layers) - 1), out_dim, **kw)


# ----------------------------------------------------------------------------------------------
# The linear classifier.


def linear_init(feature_dim: int, num_classes: int) -> dict[str, jax.Array]:
  """Zero-initialised ``{'kernel': [d, C], 'bias': [C]}`` (float32): every probe starts equal."""
  return {'kernel': jnp.zeros((feature_dim, num_classes), jnp.float32),
          'bias': jnp.zeros((num_classes,), jnp.float32)}


def linear_logits(params: dict, x: jax.Array) -> jax.Array:
  """``x W + b``."""
  return x @ params['kernel'] + params['bias']


def classification_loss(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(mean softmax cross-entropy, top-1 accuracy)`` of ``logits [B, C]`` for ``labels [B]``."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return ce, jnp.mean(jnp.argmax(logits, -1) == labels)


class LinearHead(nnx.Module):
  """:func:`linear_logits` as a module (parameters ``kernel`` and ``bias``, zero-initialised)."""

  def __init__(self, feature_dim: int, num_classes: int, *, dtype: Any = jnp.float32):
    params = linear_init(int(feature_dim), int(num_classes))
    self.kernel = nnx.Param(params['kernel'])
    self.bias = nnx.Param(params['bias'])
    self.dtype = dtype

  def __call__(self, x):
    params = {'kernel': self.kernel[...], 'bias': self.bias[...]}
    return linear_logits(jax.tree.map(lambda p: p.astype(self.dtype), params), x.astype(self.dtype))
