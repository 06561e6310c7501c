"""W-MSE: MSE between whitened positives (Ermolov et al. 2021, eqs. 4-6, Algorithm 1).

Follows the official code (htdt/self-supervised, ``methods/w_mse.py`` + ``methods/whitening.py``):
each of ``w_iter`` iterations draws a random partition of the ``N`` images into sub-batches of
``w_size``; within a sub-batch each view's rows are whitened separately (Cholesky whitening), and
the loss is ``2 - 2 cos`` between the whitened rows of the two views, averaged over rows and
iterations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental.layout import Layout, with_layout_constraint
from jax.lax.linalg import triangular_solve
from jax.scipy.linalg import solve_triangular

from glf_jax.losses import checks
from glf_jax.losses.similarity import l2_normalize

__all__ = ['whiten', 'wmse', 'wmse_permutations']

# Ridge ``eps·I`` added to the sub-batch covariance: an absolute variance floor (docs/maths.md §2's
# ``cov + eps·I``). The official CIFAR setting is eps = 0 with w_size = 128 > D = 64, a full-rank
# covariance; it whitens exactly, but its Cholesky fails (NaN) as soon as a sub-batch is
# rank-deficient (w_size <= D, duplicate rows, a collapsed dimension). With a ridge, the float32
# Cholesky succeeds while λ_max(cov) / eps stays below ~1e7 (measured: D = 64/256, w_size = 8-128,
# rank-deficient). eps = 1e-3 is ~1e-3 of the unit per-dimension variance of a projector output:
# where the covariance is full rank the loss moves by ~0.3% from exact whitening (0.1467 vs 0.1471
# at D = 64, w_size = 128), it caps the gain of a collapsed direction at 1/sqrt(eps) ≈ 32, and
# rank-deficient sub-batches stay finite, values and gradients, up to feature variances of ~100
# (1e-4 already fails at variance 100, D = 256). Larger features need a larger eps (or eps scaled
# with their variance); eps = 0 reproduces the official code when every sub-batch is full rank.
DEFAULT_EPS = 1e-3


def _covariance_ridge(x, eps):
  """``(xc, xcᵀ xc / (n-1) + eps·I)`` with ``xc`` the centred rows of ``x [n, D]``."""
  n, d = x.shape
  xc = x - jnp.mean(x, axis=0, keepdims=True)
  # HIGHEST: on accelerators a default-precision float32 matmul may round its inputs to
  # bf16/tf32, which would wreck the covariance that the Cholesky then inverts.
  cov = jnp.matmul(xc.T, xc, precision=jax.lax.Precision.HIGHEST) / (n - 1)
  return xc, cov + eps * jnp.eye(d, dtype=x.dtype)


def _whiten(x, eps):
  """``xc L^{-T}``, ``L Lᵀ = xcᵀ xc / (n-1) + eps·I``, ``xc`` the centred rows of ``x [n, D]``."""
  xc, a = _covariance_ridge(x, eps)
  return solve_triangular(jnp.linalg.cholesky(a), xc.T, lower=True).T


# CPU: LAPACK's custom calls take and give column-major matrices, and XLA's layout assignment
# spreads that layout into the element-wise fusions around them, which the YNNPACK fusion of
# glf_jax.xla_cpu's 'fast' preset rejects ("Instruction with unsupported layout in YNN fusion").
# Pinning every LAPACK operand and result to row-major makes XLA put plain transposing copies at
# the calls instead. The Cholesky's own JVP (JAX's rule, with the same pins) is written out
# because JAX's rule has element-wise steps on the column-major factor that cannot be pinned.
def _row_major(x):
  return with_layout_constraint(x, Layout(major_to_minor=tuple(range(x.ndim))))


@jax.custom_jvp
def _cholesky_row_major(a):
  return _row_major(jax.lax.linalg.cholesky(_row_major(a), symmetrize_input=False))


@_cholesky_row_major.defjvp
def _cholesky_row_major_jvp(primals, tangents):
  # JAX's cholesky_jvp_rule: dL = L Φ(L⁻¹ dA L⁻ᵀ), Φ = lower triangle with half the diagonal.
  (a,), (a_dot,) = primals, tangents
  chol = _cholesky_row_major(a)
  right = _row_major(triangular_solve(chol, _row_major(a_dot), left_side=False,
                                      transpose_a=True, lower=True))
  inner = _row_major(triangular_solve(chol, right, left_side=True, lower=True))
  phi = jnp.tril(inner) / (1 + jnp.eye(a.shape[-1], dtype=a.dtype))
  return chol, jnp.matmul(chol, phi, precision=jax.lax.Precision.HIGHEST)


def _whiten_cpu(x, eps):
  """``_whiten`` with every LAPACK call pinned to row-major layouts (see above)."""
  xc, a = _covariance_ridge(x, eps)
  return _row_major(triangular_solve(_cholesky_row_major(a), _row_major(xc), left_side=False,
                                     lower=True, transpose_a=True))


def _whiten_groups(groups, eps):
  """``_whiten`` of each ``[w_size, D]`` group of ``groups [G, w_size, D]``.

  Vectorised (``vmap``: one batched Cholesky and one batched triangular solve) on accelerators.
  On CPU the groups go through ``lax.map`` instead, one unbatched LAPACK call each: jaxlib 0.10's
  batched CPU LAPACK kernels split their batch over XLA's intra-op thread pool and block waiting
  for it, which deadlocks when as many batched calls run concurrently as the pool has threads
  (seen here on 2 cores: the two views' Cholesky / solves, forward or backward, hang for good).
  """
  return jax.lax.platform_dependent(
      groups,
      cpu=lambda g: jax.lax.map(lambda x: _whiten_cpu(x, eps), g),
      default=lambda g: jax.vmap(_whiten, in_axes=(0, None))(g, eps))


def whiten(x, *, eps=DEFAULT_EPS):
  """Cholesky-whitened rows of ``x [n, D]``: ``xc L^{-T}`` with ``L`` the Cholesky factor of
  ``xcᵀ xc / (n-1) + eps·I`` and ``xc = x - mean_rows(x)``.

  The result has zero mean and covariance ``I - eps·L^{-1}L^{-T}``, with eigenvalues
  ``λ/(λ + eps)`` for the eigenvalues ``λ`` of ``cov`` (exactly ``I`` for ``eps = 0`` and a
  full-rank ``cov``). Computed in float32 for low-precision inputs (float64 in
  x64 mode); ``eps > 0`` keeps a rank-deficient ``x`` (``n <= D``) finite (in float32 while
  ``λ_max(cov)/eps ≲ 1e7``, see ``DEFAULT_EPS``), ``eps = 0`` needs ``n > D`` and a full-rank
  covariance. Gradients flow through the covariance and its Cholesky. (``jax.vmap(whiten)`` on
  CPU makes a batched Cholesky, which can deadlock in jaxlib 0.10; ``wmse`` maps over its
  sub-batches there instead.)
  """
  if jnp.ndim(x) != 2:
    raise ValueError(f'x must have shape [n, D], got shape {jnp.shape(x)}')
  if jnp.shape(x)[0] < 2:
    raise ValueError(f'whitening needs n >= 2 rows for a covariance, got shape {jnp.shape(x)}')
  checks.check_nonnegative('eps', eps)
  return jax.lax.platform_dependent(x.astype(checks.compute_dtype(x)),
                                    cpu=lambda v: _whiten_cpu(v, eps),
                                    default=lambda v: _whiten(v, eps))


def _check_w_size(w_size, num_rows):
  if w_size is None:
    w_size = num_rows
  if not isinstance(w_size, int) or isinstance(w_size, bool) or w_size < 2:
    raise ValueError(f'w_size must be None (the whole batch) or an int >= 2, got {w_size!r}')
  if num_rows % w_size:
    raise ValueError(f'the batch of N = {num_rows} images must be a multiple of w_size = '
                     f'{w_size} (it is cut into N / w_size whitening sub-batches)')
  return w_size


def wmse_permutations(key, num_rows: int, w_iter: int):
  """The ``[w_iter, N]`` image orders ``wmse`` uses: iteration ``i`` draws
  ``jax.random.permutation(jax.random.fold_in(key, i), N)``; sub-batch ``s`` of it is
  ``perm[s·w_size:(s+1)·w_size]``."""
  return jax.vmap(lambda i: jax.random.permutation(jax.random.fold_in(key, i), num_rows))(
      jnp.arange(w_iter))


def wmse(z1, z2, key, *, w_size=128, w_iter=1, eps=DEFAULT_EPS):
  """``(1/w_iter) Σ_it [2 - 2 mean_i cos(w1_i, w2_i)]``, ``w`` the sub-batch-whitened rows.

  Args:
    z1, z2: ``[N, D]`` projections of view 1 and view 2 (not normalised before whitening).
    key: PRNG key for the random partitions (replicate it across devices; see
      ``wmse_permutations`` for how it is used).
    w_size: rows per whitening sub-batch (``>= 2``; ``N`` must be a multiple of it), ``None`` for
      the whole batch. The paper uses ``w_size > D`` (e.g. 128 for ``D = 64``).
    w_iter: number of random partitions averaged.
    eps: ridge added to each sub-batch covariance (``cov + eps·I``, docs/maths.md §2; the official code's
      shrinkage ``(1-eps)·cov + eps·I`` differs by the ``(1-eps)`` factor). See ``DEFAULT_EPS``.

  In each iteration the ``N`` images are permuted and cut into ``N / w_size`` sub-batches; view 1's
  and view 2's rows of a sub-batch are whitened separately (as the official code does), the
  sub-batches all at once (``vmap``). Gradients flow through the whitening into both views. The
  loss lies in ``[0, 4]``; ``aux['pos_sim']`` is the mean cosine of the whitened positives.
  """
  checks.check_views(z1, z2)
  checks.check_nonnegative('eps', eps)
  num_rows = z1.shape[0]
  w_size = _check_w_size(w_size, num_rows)
  if not isinstance(w_iter, int) or isinstance(w_iter, bool) or w_iter < 1:
    raise ValueError(f'w_iter must be an int >= 1, got {w_iter!r}')
  dtype = checks.compute_dtype(z1, z2)
  groups = wmse_permutations(key, num_rows, w_iter).reshape(-1, w_size)  # [G = w_iter·N/w_size, w]
  # Both views' sub-batches in one stack [2G, w_size, D]; each group is whitened on its own.
  w1, w2 = jnp.split(_whiten_groups(jnp.concatenate([z1.astype(dtype)[groups],
                                                    z2.astype(dtype)[groups]]), eps), 2)
  cos = jnp.sum(l2_normalize(w1) * l2_normalize(w2), axis=-1)
  loss = 2.0 - 2.0 * jnp.mean(cos)
  return loss, {'wmse': loss, 'pos_sim': jnp.mean(cos)}
