"""Identities that pin the maths, gradients, and numerical safety of every loss."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from glf_jax import losses
from tests import reference_losses as ref


def _views(seed, n, d, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return [rng.standard_normal((n, d)).astype(dtype) for _ in range(2)]


# ---------------------------------------------------------------- identities


@pytest.mark.parametrize('tau', [0.1, 0.5, 2.0])
@pytest.mark.parametrize('similarity', ['cosine', 'dot', 'neg_sq_euclidean'])
def test_balanced_with_positive_is_tau_times_nt_xent(tau, similarity):
  z1, z2 = _views(1, 6, 4)
  z1, z2 = 0.5 * z1, 0.5 * z2
  balanced, _ = losses.balanced_contrastive(z1, z2, alpha=1 / tau, lam=1.0,
                                            include_positive=True, similarity=similarity)
  nt, _ = losses.nt_xent(z1, z2, temperature=tau, similarity=similarity)
  np.testing.assert_allclose(balanced, tau * nt, rtol=1e-5)


def test_balanced_without_positive_differs_from_nt_xent():
  z1, z2 = _views(2, 6, 4)
  balanced, _ = losses.balanced_contrastive(z1, z2, alpha=2.0, lam=1.0)
  nt, _ = losses.nt_xent(z1, z2, temperature=0.5)
  assert abs(float(balanced) - 0.5 * float(nt)) > 1e-3


@pytest.mark.parametrize('similarity', ['cosine', 'dot', 'neg_sq_euclidean'])
def test_nscl_with_distinct_labels_is_nt_xent(similarity):
  z1, z2 = _views(3, 7, 5)
  labels = np.arange(7, dtype=np.int32)
  a, _ = losses.nscl(z1, z2, labels, temperature=0.3, similarity=similarity)
  b, _ = losses.nt_xent(z1, z2, temperature=0.3, similarity=similarity)
  np.testing.assert_allclose(a, b, rtol=1e-6)
  shared, _ = losses.nscl(z1, z2, np.zeros(7, np.int32), temperature=0.3, similarity=similarity)
  assert abs(float(shared) - float(b)) > 1e-3  # same-class rows really leave the denominator


def test_dcm_vanishes_as_rho_grows():
  z1, z2 = _views(4, 6, 5)
  values = [float(losses.dcm(z1, z2, rho=rho)[0]) for rho in (3.0, 30.0, 3e3, 3e6)]
  assert all(a > b for a, b in zip(values, values[1:])), values
  assert values[-1] < 1e-6 * values[0]
  assert float(losses.dcm(z1, z2, rho=float('inf'))[0]) == 0.0


def test_entropy_weights_mean_one_and_outlier_smallest():
  rng = np.random.default_rng(5)
  # Two tight clusters in prior space, plus one anchor (row 0 of each view) orthogonal to both.
  centres = np.eye(8)[:2] * 5
  prior1 = np.concatenate([[np.eye(8)[7]], centres[rng.integers(0, 2, 9)] + 0.1 * rng.standard_normal((9, 8))])
  prior2 = prior1 + 0.05 * rng.standard_normal(prior1.shape)
  prior2[0] = np.eye(8)[6]
  z1, z2 = _views(6, 10, 4)
  _, aux = losses.lpm(z1, z2, prior1.astype(np.float32), prior2.astype(np.float32))
  w = np.asarray(aux['entropy_weights'])
  np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)
  assert set(np.argsort(w)[:2]) == {0, 10}, w


def test_dcm_pulls_near_rows_together_and_pushes_far_rows_apart():
  # One gradient step on DCM: the nearest neighbour of row 0 gets closer, the farthest gets farther.
  rng = np.random.default_rng(7)
  z1, z2 = _views(7, 8, 6)
  z = np.concatenate([z1, z2])
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  d = ((z[0] - z) ** 2).sum(1)
  d[0] = np.inf
  near = int(np.argmin(d))
  d[0] = -np.inf
  far = int(np.argmax(d))
  g1, g2 = jax.grad(lambda a, b: losses.dcm(a, b, sigma2=0.25)[0], argnums=(0, 1))(
      z[:8], z[8:])
  z_new = z - 0.05 * np.concatenate([g1, g2])
  z_new /= np.linalg.norm(z_new, axis=1, keepdims=True)
  d_new = ((z_new[0] - z_new) ** 2).sum(1)
  d_old = ((z[0] - z) ** 2).sum(1)
  assert d_new[near] < d_old[near] and d_new[far] > d_old[far]


def test_adc_without_prior_is_nu_times_dcm():
  z1, z2 = _views(8, 5, 4)
  a, _ = losses.adc(z1, z2, nu=0.7)
  d, _ = losses.dcm(z1, z2)
  np.testing.assert_allclose(a, 0.7 * d, rtol=1e-6)


def test_byol_is_zero_for_matching_targets():
  p1, p2 = _views(9, 4, 3)
  loss, _ = losses.byol(p1, p2, 3 * p2, 2 * p1)
  np.testing.assert_allclose(loss, 0.0, atol=1e-6)


def test_byol_is_the_sum_of_both_directions():
  """docs/maths.md §2: ``L + L~``, each the batch mean of ``2 - 2 cos``; orthogonal targets give 2 + 2."""
  p1, p2 = _views(9, 4, 3)
  t1, t2 = _views(10, 4, 3)
  loss, aux = losses.byol(p1, p2, t1, t2)
  one_way = lambda p, t: float(jnp.mean(2 - 2 * jnp.sum(
      p * t, -1) / (jnp.linalg.norm(p, axis=-1) * jnp.linalg.norm(t, axis=-1))))
  np.testing.assert_allclose(loss, one_way(p1, t2) + one_way(p2, t1), rtol=1e-6)
  np.testing.assert_allclose(loss, 2 * (2 - 2 * aux['pos_sim']), rtol=1e-6)
  e = np.eye(4, dtype=np.float32)[:2]
  np.testing.assert_allclose(losses.byol(e, e, e[::-1], e[::-1])[0], 4.0, rtol=1e-6)
  np.testing.assert_allclose(losses.byol(e, e, -e, -e)[0], 8.0, rtol=1e-6)  # the top of [0, 8]


def test_simsiam_range_and_matching_targets():
  p1, p2 = _views(18, 4, 3)
  np.testing.assert_allclose(losses.simsiam(p1, p2, 3 * p2, 2 * p1)[0], -1.0, rtol=1e-6)
  np.testing.assert_allclose(losses.simsiam(p1, p2, -p2, -p1)[0], 1.0, rtol=1e-6)


def test_mocov3_on_orthonormal_rows():
  """Queries = keys = orthonormal rows: each direction is ``2τ log(1 + (N-1) e^{-1/τ})``."""
  n, tau = 5, 0.2
  e = np.eye(8, dtype=np.float32)[:n]
  loss, aux = losses.mocov3(e, e, 2 * e, 3 * e, temperature=tau)
  expected = 2 * (2 * tau * np.log1p((n - 1) * np.exp(-1 / tau)))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(aux['pos_sim'], 1.0, rtol=1e-6)
  np.testing.assert_allclose(aux['neg_sim'], 0.0, atol=1e-7)


def test_wmse_is_zero_for_identical_views():
  z1, _ = _views(19, 8, 3)
  # Exact whitening (eps = 0, full-rank sub-batches of 4 > D = 3) removes any scale and shift.
  loss, aux = losses.wmse(z1, 2 * z1 + 1, jax.random.PRNGKey(0), w_size=4, eps=0.0)
  np.testing.assert_allclose(loss, 0.0, atol=1e-5)
  np.testing.assert_allclose(aux['pos_sim'], 1.0, rtol=1e-5)


@pytest.mark.parametrize('n,d,eps', [(50, 6, 0.0), (9, 8, 0.0), (50, 6, 1e-3), (6, 8, 1e-3),
                                     (50, 6, 0.3), (6, 8, 0.3)])
def test_whiten_gives_identity_covariance(n, d, eps):
  """``cov(whiten(x)) = L^{-1} cov L^{-T} = I - eps L^{-1} L^{-T}``: exactly ``I`` at ``eps = 0``;
  its eigenvalues are ``λ / (λ + eps)`` for the eigenvalues ``λ`` of ``cov``."""
  x = np.random.default_rng(n + d).standard_normal((n, d)) * np.linspace(0.5, 3, d)
  with jax.enable_x64(True):
    w = np.asarray(losses.whiten(x, eps=eps))
  cov = np.cov(x, rowvar=False)
  np.testing.assert_allclose(w.mean(0), 0.0, atol=1e-12)
  chol_inv = np.linalg.inv(np.linalg.cholesky(cov + eps * np.eye(d)))
  np.testing.assert_allclose(np.cov(w, rowvar=False), np.eye(d) - eps * chol_inv @ chol_inv.T,
                             atol=1e-11)
  lam = np.linalg.eigvalsh(cov)
  np.testing.assert_allclose(np.linalg.eigvalsh(np.cov(w, rowvar=False)), lam / (lam + eps),
                             atol=1e-11)
  if eps == 0.0:
    np.testing.assert_allclose(np.cov(w, rowvar=False), np.eye(d), atol=1e-11)
  # Cholesky whitening: w = xc L^{-T} with L lower triangular, so w's first column is xc's scaled.
  np.testing.assert_allclose(w[:, 0] * np.sqrt(cov[0, 0] + eps), x[:, 0] - x[:, 0].mean(),
                             rtol=1e-10, atol=1e-12)


def test_whiten_identity_covariance_in_float32():
  x = np.random.default_rng(3).standard_normal((256, 16)).astype(np.float32)
  w = np.asarray(losses.whiten(x, eps=0.0))
  assert w.dtype == np.float32
  np.testing.assert_allclose(np.cov(w.astype(np.float64), rowvar=False), np.eye(16), atol=1e-4)
  wb = losses.whiten(jnp.asarray(x, jnp.bfloat16), eps=0.0)
  assert wb.dtype == jnp.float32  # computed in float32, not in bfloat16


# ---------------------------------------------------------------- stop-gradients


@pytest.mark.parametrize('name', ['mocov3', 'simsiam'])
def test_stop_gradient_side_gets_no_gradient(name):
  """MoCo v3's keys and SimSiam's projections (the last two arguments) are stop-gradient."""
  online1, online2 = _views(20, 6, 5)
  target1, target2 = _views(21, 6, 5)
  loss = getattr(losses, name)
  grads = jax.grad(lambda *a: loss(*a)[0], argnums=(0, 1, 2, 3))(online1, online2, target1,
                                                                  target2)
  assert all(np.any(np.asarray(g) != 0) for g in grads[:2])
  for g in grads[2:]:
    np.testing.assert_array_equal(g, 0.0)


def test_wmse_gradient_reaches_both_views():
  z1, z2 = _views(24, 8, 3)
  g1, g2 = jax.grad(lambda a, b: losses.wmse(a, b, jax.random.PRNGKey(0), w_size=4)[0],
                    argnums=(0, 1))(z1, z2)
  assert np.any(np.asarray(g1) != 0) and np.any(np.asarray(g2) != 0)


# ---------------------------------------------------------------- gradients

LABELS = np.array([0, 1, 0, 2, 1], np.int32)
PRIORS = [np.random.default_rng(11).standard_normal((5, 6)) for _ in range(2)]
PROTOTYPES = np.random.default_rng(12).standard_normal((7, 4))
TARGETS = [np.random.default_rng(17).standard_normal((5, 4)) for _ in range(2)]
WMSE_KEY = jax.random.PRNGKey(5)

# Each: a function of (z1, z2) only, everything else fixed.
LOSS_OF_VIEWS = {
    'nt_xent': lambda a, b, **k: losses.nt_xent(a, b, temperature=0.5, **k),
    'nt_xent_dot': lambda a, b, **k: losses.nt_xent(a, b, similarity='dot', **k),
    'nt_xent_euclid': lambda a, b, **k: losses.nt_xent(a, b, similarity='neg_sq_euclidean', **k),
    'balanced': lambda a, b, **k: losses.balanced_contrastive(a, b, **k),
    'nscl': lambda a, b, **k: losses.nscl(a, b, LABELS, **k),
    'supcon': lambda a, b, **k: losses.supcon(a, b, LABELS, **k),
    'byol': lambda a, b, **k: losses.byol(a, b, *[t.astype(a.dtype) for t in TARGETS]),
    'simsiam': lambda a, b, **k: losses.simsiam(a, b, *[t.astype(a.dtype) for t in TARGETS]),
    'mocov3': lambda a, b, **k: losses.mocov3(a, b, *[t.astype(a.dtype) for t in TARGETS]),
    'wmse': lambda a, b, **k: losses.wmse(a, b, WMSE_KEY, w_size=5, w_iter=2),
    'barlow_twins': lambda a, b, **k: losses.barlow_twins(a, b, lambda_offdiag=0.1),
    'vicreg': lambda a, b, **k: losses.vicreg(a, b),
    'swav': lambda a, b, **k: losses.swav(a, b, PROTOTYPES.astype(a.dtype)),
    'dcm': lambda a, b, **k: losses.dcm(a, b, **k),
    'lpm': lambda a, b, **k: losses.lpm(a, b, *[p.astype(a.dtype) for p in PRIORS], **k),
    'adc': lambda a, b, **k: losses.adc(a, b, *[p.astype(a.dtype) for p in PRIORS], nu=1.0,
                                        upsilon=1.0, **k),
}
BLOCKWISE = {'nt_xent', 'nt_xent_dot', 'nt_xent_euclid', 'balanced', 'nscl', 'supcon', 'dcm',
             'lpm', 'adc'}


# DCM's calibration target P (and SwAV's codes) is a stop-gradient constant of the step, so a finite difference of
# the loss itself is not its gradient; these are checked against the reference with P held fixed.
STOP_GRADIENT_TARGET = {
    'dcm': lambda a, b, z0: ref.dcm(a, b, 0.5, 5.0, target=z0),
    'adc': lambda a, b, z0: ref.adc(a, b, *PRIORS, 1.0, 1.0, 0.5, 0.5, 5.0, target=z0),
    'swav': lambda a, b, z0: ref.swav(a, b, PROTOTYPES, 0.1, 0.05, 3, target=z0),
}


def _central_differences(fn, z1, z2, eps=1e-6):
  grads = []
  for which in range(2):
    g = np.zeros_like(z1)
    for idx in np.ndindex(z1.shape):
      args = [z1.copy(), z2.copy()]
      args[which][idx] += eps
      up = fn(*args)
      args[which][idx] -= 2 * eps
      g[idx] = (up - fn(*args)) / (2 * eps)
    grads.append(g)
  return grads


@pytest.mark.parametrize('name', sorted(LOSS_OF_VIEWS))
def test_gradients_match_finite_differences_in_float64(name):
  z1, z2 = _views(13, 5, 4, np.float64)
  with jax.enable_x64(True):
    fn = lambda a, b: LOSS_OF_VIEWS[name](a, b)[0]
    if name in STOP_GRADIENT_TARGET:
      expected = _central_differences(
          lambda a, b: STOP_GRADIENT_TARGET[name](a, b, (z1, z2)), z1, z2)
      for g, e in zip(jax.grad(fn, argnums=(0, 1))(z1, z2), expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-8)
    else:
      check_grads(fn, (jnp.asarray(z1), jnp.asarray(z2)), order=1, modes=['rev'], eps=1e-6,
                  atol=1e-6, rtol=1e-5)
    if name in BLOCKWISE:  # the rematerialised blockwise backward pass is the same gradient
      blocked = lambda a, b: LOSS_OF_VIEWS[name](a, b, block_size=3)[0]
      g_dense = jax.grad(fn, argnums=(0, 1))(z1, z2)
      g_block = jax.grad(blocked, argnums=(0, 1))(z1, z2)
      for x, y in zip(g_dense, g_block):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)


def _assert_finite_value_and_grad(fn, z1, z2):
  value, grads = jax.value_and_grad(lambda a, b: fn(a, b)[0], argnums=(0, 1))(z1, z2)
  assert np.isfinite(float(value))
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g, np.float32)))


@pytest.mark.parametrize('alpha', [1.0, 8.0, 16.0])
@pytest.mark.parametrize('similarity', ['cosine', 'dot', 'neg_sq_euclidean'])
def test_balanced_large_alpha_finite(alpha, similarity):
  z1, z2 = _views(14, 6, 8)
  z1, z2 = 3 * z1, 3 * z2  # large logits for dot / euclidean
  _assert_finite_value_and_grad(
      functools.partial(losses.balanced_contrastive, alpha=alpha, similarity=similarity), z1, z2)


@pytest.mark.parametrize('temperature', [0.05, 0.1])
@pytest.mark.parametrize('fn', ['nt_xent', 'nscl', 'supcon'])
def test_low_temperature_finite(temperature, fn):
  z1, z2 = _views(15, 6, 8)
  extra = () if fn == 'nt_xent' else (LABELS.tolist() + [3],)
  loss_fn = getattr(losses, fn)
  _assert_finite_value_and_grad(
      lambda a, b: loss_fn(a, b, *[np.asarray(e, np.int32) for e in extra],
                           temperature=temperature, similarity='dot'), 10 * z1, 10 * z2)


@pytest.mark.parametrize('name', sorted(LOSS_OF_VIEWS))
@pytest.mark.parametrize('case', ['bf16', 'zero_row', 'duplicate_rows'])
def test_no_nan_or_inf(name, case):
  z1, z2 = _views(16, 5, 4)
  if case == 'zero_row':
    z1[2] = 0.0
  elif case == 'duplicate_rows':
    z1[1] = z1[0]
    z2[:] = z1
  if case == 'bf16':
    z1, z2 = jnp.asarray(z1, jnp.bfloat16), jnp.asarray(z2, jnp.bfloat16)
  _assert_finite_value_and_grad(LOSS_OF_VIEWS[name], z1, z2)
  if case == 'bf16':  # computed in float32, not in bfloat16
    assert LOSS_OF_VIEWS[name](z1, z2)[0].dtype == jnp.float32


@pytest.mark.optimized  # runs far longer than it compiles
@pytest.mark.parametrize('w_size', [2, 4, 8])
def test_wmse_rank_deficient_sub_batches(w_size):
  """``w_size <= D``: a singular covariance; the ridge keeps values and gradients finite and smooth."""
  z1, z2 = _views(25, 16, 8, np.float64)
  fn = lambda a, b: losses.wmse(a, b, WMSE_KEY, w_size=w_size, w_iter=2)[0]
  with jax.enable_x64(True):
    check_grads(fn, (jnp.asarray(z1), jnp.asarray(z2)), order=1, modes=['rev'], eps=1e-6,
                atol=1e-5, rtol=1e-4)
  _assert_finite_value_and_grad(
      lambda a, b: losses.wmse(a, b, WMSE_KEY, w_size=w_size, w_iter=2),
      z1.astype(np.float32), z2.astype(np.float32))
  # A collapsed dimension and a sub-batch of identical rows (zero covariance) stay finite too.
  z1[:, 3] = 1.0
  z2[:w_size] = z2[0]
  _assert_finite_value_and_grad(
      lambda a, b: losses.wmse(a, b, WMSE_KEY, w_size=w_size, w_iter=2),
      z1.astype(np.float32), z2.astype(np.float32))


def test_wmse_under_jit_with_a_traced_key():
  z1, z2 = _views(26, 12, 4)
  eager, _ = losses.wmse(z1, z2, WMSE_KEY, w_size=6, w_iter=3)
  jitted, _ = jax.jit(lambda a, b, k: losses.wmse(a, b, k, w_size=6, w_iter=3))(z1, z2, WMSE_KEY)
  np.testing.assert_allclose(jitted, eager, rtol=1e-6)
  typed_key = jax.random.key(5)  # new-style typed keys draw the same permutations
  typed, _ = losses.wmse(z1, z2, typed_key, w_size=6, w_iter=3)
  np.testing.assert_allclose(typed, eager, rtol=1e-6)


# ---------------------------------------------------------------- argument checks

_Z = np.ones((8, 3), np.float32)
_KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize('call,match', [
    (lambda: losses.wmse(_Z, _Z, _KEY, w_size=3), 'multiple of w_size'),
    (lambda: losses.wmse(_Z, _Z, _KEY, w_size=16), 'multiple of w_size'),
    (lambda: losses.wmse(_Z, _Z, _KEY, w_size=1), 'w_size must be'),
    (lambda: losses.wmse(_Z, _Z, _KEY, w_size=4.0), 'w_size must be'),
    (lambda: losses.wmse(_Z, _Z, _KEY, w_size=4, w_iter=0), 'w_iter must be'),
    (lambda: losses.wmse(_Z, _Z, _KEY, w_size=4, eps=-1e-3), 'eps must be'),
    (lambda: losses.wmse(_Z, _Z[:4], _KEY, w_size=4), 'same shape'),
    (lambda: losses.whiten(_Z[0]), r'shape \[n, D\]'),
    (lambda: losses.whiten(_Z[:1]), 'n >= 2'),
    (lambda: losses.mocov3(_Z, _Z, _Z, _Z, temperature=0.0), 'temperature must be'),
    (lambda: losses.mocov3(_Z, _Z, _Z[:, :2], _Z[:, :2]), 'queries and keys'),
    (lambda: losses.simsiam(_Z, _Z, _Z[:, :2], _Z[:, :2]), 'predictions and projections'),
    (lambda: losses.simsiam(_Z, _Z[:4], _Z, _Z), 'same shape'),
])
def test_bad_arguments_are_rejected(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_whiten_vmapped_matches_per_group():
  """The accelerator path of ``wmse`` (``vmap``: batched Cholesky and solve) whitens each group as
  ``whiten`` does. Forward only, one batched call at a time: on CPU two concurrent batched LAPACK
  calls can deadlock in jaxlib 0.10, which is why ``wmse`` maps over groups there."""
  groups = np.random.default_rng(27).standard_normal((5, 6, 4)).astype(np.float32)
  batched = jax.jit(jax.vmap(lambda x: losses.whiten(x, eps=1e-3)))(groups)
  for g, w in zip(groups, np.asarray(batched)):
    np.testing.assert_allclose(w, losses.whiten(g, eps=1e-3), rtol=1e-5, atol=1e-6)
