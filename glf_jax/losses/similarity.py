"""Pairwise similarities and the row masks shared by every pairwise (contrastive) loss.

Two views ``z1, z2`` of shape ``[N, D]`` are stacked into ``M = 2N`` rows; the positive of row
``i`` is ``pos(i) = (i + N) mod M`` (docs/maths.md §0). Every pairwise loss is evaluated one block of anchor
rows at a time against all ``M`` columns, so the same code serves the dense form (one block) and
the memory-bounded blockwise form (see ``blockwise.py``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from glf_jax.losses import checks

SIMILARITIES = ('cosine', 'dot', 'neg_sq_euclidean')

# Rows with a norm below this are treated as norm EPS when normalising, so a zero row stays a
# finite zero vector (with a finite gradient) instead of 0/0.
NORM_EPS = 1e-12


def l2_normalize(x, axis=-1):
  """``x / max(|x|, NORM_EPS)``; finite value and gradient for a zero row.

  The one row normaliser of the package (losses, prototypes, kNN, metrics): a NumPy array stays a
  NumPy array in its own precision (the float64 metrics), anything else is computed with JAX.
  """
  xp = np if isinstance(x, np.ndarray) else jnp
  sq = xp.sum(xp.square(x), axis=axis, keepdims=True)
  return x * (1.0 / xp.sqrt(xp.maximum(sq, NORM_EPS**2)))


def stack_views(z1, z2):
  """``[N, D] x 2 -> [2N, D]`` in the compute dtype (float32 for bf16 inputs)."""
  dtype = checks.compute_dtype(z1, z2)
  return jnp.concatenate([z1.astype(dtype), z2.astype(dtype)], axis=0)


class PairwiseSimilarity:
  """``s(z_i, z_k)`` for a block of anchor rows against every column.

  The per-column work (normalisation, squared norms) is done once here, not once per block.
  """

  def __init__(self, z, similarity: str):
    checks.check_choice('similarity', similarity, SIMILARITIES)
    self.kind = similarity
    self.z = l2_normalize(z) if similarity == 'cosine' else z
    if similarity == 'neg_sq_euclidean':
      self.sq_norms = jnp.sum(jnp.square(z), axis=-1)

  @property
  def num_rows(self) -> int:
    return self.z.shape[0]

  def rows(self, rows):
    """Similarities ``[len(rows), M]`` of the anchors ``rows`` to all rows."""
    dots = self.z[rows] @ self.z.T
    if self.kind != 'neg_sq_euclidean':
      return dots
    # -|u - v|^2 = 2<u, v> - |u|^2 - |v|^2, clamped so rounding never makes it positive.
    return jnp.minimum(2.0 * dots - self.sq_norms[rows, None] - self.sq_norms[None, :], 0.0)


def squared_distances(zn, rows):
  """``|z_r - z_k|^2`` for anchors ``rows`` against all rows, clamped at 0 (rounding)."""
  sq = jnp.sum(jnp.square(zn), axis=-1)
  return jnp.maximum(sq[rows, None] + sq[None, :] - 2.0 * (zn[rows] @ zn.T), 0.0)


def row_masks(rows, num_rows: int):
  """Boolean ``[len(rows), M]`` masks: the anchor itself, and its positive ``pos(i)``."""
  cols = jnp.arange(num_rows)
  positives = (rows + num_rows // 2) % num_rows
  return cols[None, :] == rows[:, None], cols[None, :] == positives[:, None]


def take_masked(values, mask):
  """Per row, the single entry of ``values`` where ``mask`` is set (e.g. the positive)."""
  return jnp.sum(jnp.where(mask, values, 0.0), axis=-1)


def masked_mean(values, mask):
  count = jnp.maximum(jnp.sum(mask, axis=-1), 1)
  return jnp.sum(jnp.where(mask, values, 0.0), axis=-1) / count
