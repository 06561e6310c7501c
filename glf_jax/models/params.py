"""Facts about parameter trees that optimisers and reports share."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from flax import nnx


def decay_mask(params: Any) -> Any:
  """True for weights that get weight decay and LARS adaptation: kernels and prototypes.

  Those are the parameters with ``ndim >= 2``; BatchNorm scales/biases and linear biases are 1-D
  and excluded, as in SimCLR's, BYOL's and solo-learn's optimisers.
  """
  return jax.tree.map(lambda p: p.ndim >= 2, params)


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
