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


# ---------------------------------------------------------------- gradients

LABELS = np.array([0, 1, 0, 2, 1], np.int32)
PRIORS = [np.random.default_rng(11).standard_normal((5, 6)) for _ in range(2)]
PROTOTYPES = np.random.default_rng(12).standard_normal((7, 4))
TARGETS = [np.random.default_rng(17).standard_normal((5, 4)) for _ in range(2)]

# Each: a function of (z1, z2) only, everything else fixed.
LOSS_OF_VIEWS = {
    'nt_xent': lambda a, b, **k: losses.nt_xent(a, b, temperature=0.5, **k),
    'nt_xent_dot': lambda a, b, **k: losses.nt_xent(a, b, similarity='dot', **k),
    'nt_xent_euclid': lambda a, b, **k: losses.nt_xent(a, b, similarity='neg_sq_euclidean', **k),
    'balanced': lambda a, b, **k: losses.balanced_contrastive(a, b, **k),
    'nscl': lambda a, b, **k: losses.nscl(a, b, LABELS, **k),
    'supcon': lambda a, b, **k: losses.supcon(a, b, LABELS, **k),
    'byol': lambda a, b, **k: losses.byol(a, b, *[t.astype(a.dtype) for t in TARGETS]),
    'barlow_twins': lambda a, b, **k: losses.barlow_twins(a, b, lambda_offdiag=0.1),
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
