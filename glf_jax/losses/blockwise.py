"""Row-blocked evaluation of ``M x M`` losses: the memory-bounded form.

Every pairwise loss in this package is a mean over anchor rows of a function of that anchor's row
of the ``M x M`` similarity matrix. ``map_rows`` evaluates such a per-row function either on all
rows at once (``block_size=None``: the dense form) or ``block_size`` anchors at a time under
``jax.lax.map`` with rematerialisation, so neither the forward nor the backward pass ever holds
more than ``block_size x M`` of the matrix: peak memory is ``O(block_size * M)`` instead of
``O(M^2)``. The result is the same function, so dense and blockwise agree to rounding.

On a sharded batch the caller needs nothing more: under ``jax.jit`` the global arrays keep their
``data``-axis sharding and XLA partitions the anchor rows across devices, each device working on
its own anchors against all (gathered) columns.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from glf_jax.losses import checks


def map_rows(row_fn: Callable, num_rows: int, block_size: int | None):
  """Applies ``row_fn(rows) -> pytree of [len(rows), ...]`` to rows ``0..num_rows-1``.

  Args:
    row_fn: maps an int32 vector of anchor indices to per-row outputs.
    num_rows: ``M``.
    block_size: ``None`` for one dense evaluation, else the number of anchors per block.

  Returns:
    The per-row outputs for all ``M`` rows, in order.
  """
  checks.check_block_size(block_size)
  if block_size is None or block_size >= num_rows:
    return row_fn(jnp.arange(num_rows))
  num_blocks = math.ceil(num_rows / block_size)
  # The last block is padded with copies of the last row; their outputs are sliced away, so they
  # add nothing to values or gradients.
  rows = jnp.minimum(jnp.arange(num_blocks * block_size), num_rows - 1)
  out = jax.lax.map(jax.checkpoint(row_fn), rows.reshape(num_blocks, block_size))
  return jax.tree.map(lambda o: o.reshape((-1,) + o.shape[2:])[:num_rows], out)
