"""Similarity between two representations or two sets of weights.

* ``linear_cka``: linear centred kernel alignment (Kornblith et al., 2019, "Similarity of Neural
  Network Representations Revisited", ICML).
* ``rsa``: representational similarity analysis, and ``weight_gap``: relative weight distance,
  both as used in arXiv 2510.08852.

Inputs may be NumPy or JAX arrays; every function returns Python floats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from glf_jax.losses.similarity import l2_normalize

RSA_METHODS = ('pearson', 'spearman')

def _check_matrix(name, x, *, min_rows=2):
  """Validates a ``[n, d]`` array-like and returns its shape (without copying device arrays)."""
  shape = np.shape(x)
  if len(shape) != 2:
    raise ValueError(f'{name} must be a 2-D [n, d] array, got shape {shape}')
  if shape[0] < min_rows:
    raise ValueError(f'{name} needs at least {min_rows} rows (samples), got shape {shape}')
  if shape[1] < 1:
    raise ValueError(f'{name} needs at least 1 feature column, got shape {shape}')
  return shape


def _check_same_rows(names, *arrays):
  rows = [np.shape(a)[0] for a in arrays]
  if len(set(rows)) != 1:
    pairs = ', '.join(f'{n}: {r}' for n, r in zip(names, rows))
    raise ValueError(f'{" and ".join(names)} must have the same number of rows, got {pairs}')


def _compute_dtype(*arrays):
  """float64 only when an input is float64 and x64 is enabled; float32 otherwise (also bf16)."""
  is_f64 = any(np.dtype(getattr(a, 'dtype', np.asarray(a).dtype)) == np.float64 for a in arrays)
  return jnp.float64 if is_f64 and jax.config.read('jax_enable_x64') else jnp.float32


@jax.jit
def _linear_cka(x, y):
  xc = x - jnp.mean(x, axis=0)
  yc = y - jnp.mean(y, axis=0)
  # CKA is scale invariant; unit Frobenius norm keeps the 4th-power terms in float32 range.
  # A constant input gives 0/0 = NaN here, which propagates to the result on purpose.
  xc = xc / jnp.linalg.norm(xc)
  yc = yc / jnp.linalg.norm(yc)
  hi = jax.lax.Precision.HIGHEST  # no TF32/bf16 passes on accelerators
  cross = jnp.sum(jnp.square(jnp.matmul(yc.T, xc, precision=hi)))
  xx = jnp.linalg.norm(jnp.matmul(xc.T, xc, precision=hi))
  yy = jnp.linalg.norm(jnp.matmul(yc.T, yc, precision=hi))
  return cross / (xx * yy)


def linear_cka(x, y) -> float:
  """Linear CKA between two representations of the same ``n`` samples (Kornblith et al., 2019).

  ``CKA(X, Y) = |Yc^T Xc|_F^2 / (|Xc^T Xc|_F |Yc^T Yc|_F)`` with column-centred ``Xc, Yc``; this
  feature-space form equals HSIC with centred linear Gram matrices and costs ``O(n d1 d2)``
  instead of ``O(n^2)`` memory. Invariant to orthogonal transforms, isotropic scaling and
  translation of either input; 1 when ``x == y``.

  Args:
    x: ``[n, d1]`` array.
    y: ``[n, d2]`` array with the same ``n``.

  Returns:
    CKA in ``[0, 1]``; NaN when ``x`` or ``y`` has zero variance (every row equal). Computed in
    float32, or float64 when an input is float64 and ``jax_enable_x64`` is on. Intended for up
    to ~10,000 samples.
  """
  _check_matrix('x', x)
  _check_matrix('y', y)
  _check_same_rows(('x', 'y'), x, y)
  dtype = _compute_dtype(x, y)
  return float(_linear_cka(jnp.asarray(x, dtype), jnp.asarray(y, dtype)))


def _cosine_rdm_lower(x):
  """Strict lower triangle of the ``1 - cosine`` dissimilarity matrix, in float64."""
  u = l2_normalize(np.asarray(x, dtype=np.float64))
  rows, cols = np.tril_indices(u.shape[0], k=-1)
  return 1.0 - (u @ u.T)[rows, cols]


def _pearson(a, b):
  a = a - a.mean()
  b = b - b.mean()
  with np.errstate(invalid='ignore', divide='ignore'):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def rsa(x, y, *, method: str = 'pearson') -> float:
  """Representational similarity analysis between two representations (arXiv 2510.08852).

  Builds a representational dissimilarity matrix ``D[i, j] = 1 - cos(row_i, row_j)`` for ``x``
  and for ``y`` and correlates their strict lower triangles (all ``n (n - 1) / 2`` distinct
  pairs). ``'spearman'`` is the Pearson correlation of average ranks (ties share a rank).

  Computed on the host in float64; it needs ``O(n^2)`` memory, so keep ``n`` to a few thousand.

  Args:
    x: ``[n, d1]`` array.
    y: ``[n, d2]`` array with the same ``n``.
    method: ``'pearson'`` or ``'spearman'``.

  Returns:
    Correlation in ``[-1, 1]``; NaN when either dissimilarity triangle is constant.
  """
  if method not in RSA_METHODS:
    raise ValueError(f'method must be one of {RSA_METHODS}, got {method!r}')
  # Two pairs are the fewest for which a correlation is defined.
  _check_matrix('x', x, min_rows=3)
  _check_matrix('y', y, min_rows=3)
  _check_same_rows(('x', 'y'), x, y)
  dx = _cosine_rdm_lower(x)
  dy = _cosine_rdm_lower(y)
  if method == 'spearman':
    dx = scipy.stats.rankdata(dx, method='average')
    dy = scipy.stats.rankdata(dy, method='average')
  return _pearson(dx, dy)


@jax.jit
def _layer_gaps(leaves_a, leaves_b):
  gaps = []
  for a, b in zip(leaves_a, leaves_b):
    dtype = jnp.float64 if a.dtype == jnp.float64 else jnp.float32  # upcast bf16/ints
    a, b = a.astype(dtype), b.astype(dtype)
    mean_norm = 0.5 * (jnp.linalg.norm(a.ravel()) + jnp.linalg.norm(b.ravel()))
    diff = jnp.linalg.norm((a - b).ravel())
    # Two all-zero layers are identical: contribute 0 rather than 0/0.
    gaps.append(jnp.where(mean_norm > 0, diff / jnp.where(mean_norm > 0, mean_norm, 1), 0))
  return jnp.sum(jnp.stack(gaps))


def weight_gap(params_a, params_b, *, min_ndim: int = 2) -> float:
  """Summed relative weight distance between two parameter pytrees (arXiv 2510.08852).

  ``sum_l |W_a^l - W_b^l|_F / (0.5 (|W_a^l|_F + |W_b^l|_F))`` over the leaves ``l`` with
  ``ndim >= min_ndim``: weight matrices and conv kernels by default, so biases and norm
  scales/offsets (1-D) are excluded. A layer whose weights are zero in both trees contributes 0.
  Symmetric in its arguments and 0 for identical trees.

  Args:
    params_a: pytree of arrays.
    params_b: pytree with the same structure and leaf shapes.
    min_ndim: smallest leaf rank that counts as a weight (``>= 0``).

  Returns:
    The summed gap as a float (each term lies in ``[0, 2]``).

  Raises:
    ValueError: on different tree structures or leaf shapes, or when no leaf has
      ``ndim >= min_ndim``.
  """
  if not isinstance(min_ndim, int) or isinstance(min_ndim, bool) or min_ndim < 0:
    raise ValueError(f'min_ndim must be an int >= 0, got {min_ndim!r}')
  paths_a, tree_a = jax.tree_util.tree_flatten_with_path(params_a)
  leaves_b, tree_b = jax.tree_util.tree_flatten(params_b)
  if tree_a != tree_b:
    raise ValueError(f'params_a and params_b have different tree structures:\n{tree_a}\nvs\n{tree_b}')
  selected_a, selected_b = [], []
  for (path, a), b in zip(paths_a, leaves_b):
    shape_a, shape_b = np.shape(a), np.shape(b)
    if shape_a != shape_b:
      raise ValueError(
          f'leaf {jax.tree_util.keystr(path)} has shape {shape_a} in params_a but {shape_b} in'
          ' params_b')
    if len(shape_a) >= min_ndim:
      selected_a.append(jnp.asarray(a))
      selected_b.append(jnp.asarray(b))
  if not selected_a:
    raise ValueError(f'no leaf has ndim >= min_ndim={min_ndim}; nothing to compare')
  return float(_layer_gaps(selected_a, selected_b))
