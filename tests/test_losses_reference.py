"""Every loss against its float64 NumPy reference (tests/reference_losses.py), float32 in, rtol 1e-5
(and, for SimSiam, MoCo v3 and W-MSE, also float64 in under x64 at rtol 1e-12)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glf_jax import losses
from tests import reference_losses as ref

RTOL = 1e-5
SIMILARITIES = ('cosine', 'dot', 'neg_sq_euclidean')


def _views(seed, n, d, scale=1.0):
  rng = np.random.default_rng(seed)
  return [(scale * rng.standard_normal((n, d))).astype(np.float32) for _ in range(2)]


def _labels(seed, n, classes):
  return np.random.default_rng(seed + 100).integers(0, classes, n).astype(np.int32)


def _close(actual, expected):
  np.testing.assert_allclose(float(actual), expected, rtol=RTOL, atol=1e-6)


# Odd and even batch sizes; 'dot' and 'neg_sq_euclidean' on unnormalised rows of scale 0.5 keep the
# logits in a range where float32 rounding stays below rtol 1e-5.
@pytest.mark.parametrize('n', [1, 4, 7])
@pytest.mark.parametrize('similarity', SIMILARITIES)
@pytest.mark.parametrize('temperature', [0.1, 0.5, 1.0])
def test_nt_xent(n, similarity, temperature):
  z1, z2 = _views(n, n, 5, scale=0.5)
  loss, aux = jax.jit(lambda a, b: losses.nt_xent(a, b, temperature=temperature,
                                                  similarity=similarity))(z1, z2)
  _close(loss, ref.nt_xent(z1, z2, temperature, similarity))
  _close(aux['align'] + aux['constrain'], float(loss))


@pytest.mark.parametrize('n', [2, 5])
@pytest.mark.parametrize('similarity', SIMILARITIES)
@pytest.mark.parametrize('alpha,lam', [(1.0, 1.0), (4.0, 2.0), (8.0, 0.5)])
@pytest.mark.parametrize('include_positive', [False, True])
def test_balanced(n, similarity, alpha, lam, include_positive):
  z1, z2 = _views(n + 10, n, 6, scale=0.5)
  loss, _ = losses.balanced_contrastive(z1, z2, alpha=alpha, lam=lam, similarity=similarity,
                                        include_positive=include_positive)
  _close(loss, ref.balanced(z1, z2, alpha, lam, similarity, include_positive))


@pytest.mark.parametrize('n,classes', [(3, 2), (7, 3), (8, 8)])
@pytest.mark.parametrize('similarity', SIMILARITIES)
@pytest.mark.parametrize('temperature', [0.2, 0.5])
def test_nscl(n, classes, similarity, temperature):
  z1, z2 = _views(n + 20, n, 4, scale=0.5)
  labels = _labels(n, n, classes)
  loss, _ = losses.nscl(z1, z2, labels, temperature=temperature, similarity=similarity)
  _close(loss, ref.nscl(z1, z2, labels, temperature, similarity))


@pytest.mark.parametrize('n,classes', [(3, 2), (7, 3)])
@pytest.mark.parametrize('similarity', SIMILARITIES)
@pytest.mark.parametrize('temperature', [0.1, 0.5])
def test_supcon(n, classes, similarity, temperature):
  z1, z2 = _views(n + 30, n, 4, scale=0.5)
  labels = _labels(n, n, classes)
  loss, _ = losses.supcon(z1, z2, labels, temperature=temperature, similarity=similarity)
  _close(loss, ref.supcon(z1, z2, labels, temperature, similarity))


def test_supcon_base_temperature_scales_the_loss():
  z1, z2 = _views(3, 5, 4)
  labels = _labels(3, 5, 2)
  plain, _ = losses.supcon(z1, z2, labels, temperature=0.1)
  scaled, _ = losses.supcon(z1, z2, labels, temperature=0.1, base_temperature=0.07)
  _close(scaled, float(plain) * 0.1 / 0.07)


@pytest.mark.parametrize('n,d', [(1, 3), (5, 8), (9, 4)])
def test_byol(n, d):
  rng = np.random.default_rng(n)
  p1, p2, t1, t2 = [rng.standard_normal((n, d)).astype(np.float32) for _ in range(4)]
  loss, _ = losses.byol(p1, p2, t1, t2)
  _close(loss, ref.byol(p1, p2, t1, t2))


# dtype -> (rtol, atol): float32 inputs are compared like the other losses, float64 inputs (x64
# mode, computed in float64) to rounding.
TOLERANCES = {np.float32: (RTOL, 1e-6), np.float64: (1e-12, 1e-13)}


def _check_against_reference(fn, args, expected, dtype, tolerances=TOLERANCES):
  """Runs ``fn(*args)`` jitted with inputs of ``dtype`` (x64 mode for float64)."""
  rtol, atol = tolerances[dtype]
  with jax.enable_x64(dtype == np.float64):
    loss, aux = jax.jit(fn)(*[np.asarray(a, dtype) for a in args])
    assert loss.dtype == dtype
  np.testing.assert_allclose(float(loss), expected, rtol=rtol, atol=atol)
  return loss, aux


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('n,d', [(1, 3), (5, 8), (9, 4)])
def test_simsiam(n, d, dtype):
  rng = np.random.default_rng(n + 200)
  p1, p2, z1, z2 = [rng.standard_normal((n, d)) for _ in range(4)]
  loss, aux = _check_against_reference(losses.simsiam, (p1, p2, z1, z2),
                                       ref.simsiam(p1, p2, z1, z2), dtype)
  assert -1.0 <= float(loss) <= 1.0
  np.testing.assert_allclose(float(aux['pos_sim']), -float(loss), rtol=1e-6)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('n,d', [(1, 3), (6, 5), (11, 8)])
@pytest.mark.parametrize('temperature', [0.1, 0.2, 1.0])
def test_mocov3(n, d, temperature, dtype):
  rng = np.random.default_rng(n + 300)
  q1, q2, k1, k2 = [rng.standard_normal((n, d)) for _ in range(4)]
  fn = lambda *a: losses.mocov3(*a, temperature=temperature)
  _, aux = _check_against_reference(fn, (q1, q2, k1, k2), ref.mocov3(q1, q2, k1, k2, temperature),
                                    dtype)
  np.testing.assert_allclose(float(aux['align'] + aux['constrain']), float(aux['mocov3']),
                             rtol=1e-5, atol=1e-5)
  pos = np.mean([ref.sim(q1[i], k2[i], 'cosine') + ref.sim(q2[i], k1[i], 'cosine')
                 for i in range(n)]) / 2
  np.testing.assert_allclose(float(aux['pos_sim']), pos, rtol=1e-5, atol=1e-6)


# (n, d, w_size, w_iter, eps): full-rank sub-batches (w_size > d) with eps = 0 as the official
# code, the default ridge, rank-deficient sub-batches (w_size <= d), and one whole-batch sub-batch.
WMSE_GRID = [(8, 3, 4, 1, 0.0), (12, 4, 6, 3, 0.0), (12, 5, 6, 3, 1e-3), (16, 8, 4, 2, 1e-3),
             (16, 6, 8, 2, 0.05), (10, 4, None, 1, 1e-3)]
# float32 whitening amplifies rounding by the covariance's condition number (~1e3 for the
# rank-deficient sub-batches at eps = 1e-3), so float32 gets a looser tolerance than the others.
WMSE_TOLERANCES = {np.float32: (2e-4, 2e-5), np.float64: (1e-12, 1e-13)}


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('n,d,w_size,w_iter,eps', WMSE_GRID)
def test_wmse(n, d, w_size, w_iter, eps, dtype):
  z1, z2 = _views(n + 400, n, d)
  key = jax.random.PRNGKey(n + d)
  # The partitions are random: the reference gets the very ones the loss draws from its key.
  perms = np.asarray(losses.wmse_permutations(key, n, w_iter))
  fn = lambda a, b: losses.wmse(a, b, key, w_size=w_size, w_iter=w_iter, eps=eps)
  _check_against_reference(fn, (z1, z2), ref.wmse(z1, z2, perms, w_size or n, eps), dtype,
                           WMSE_TOLERANCES)


def test_wmse_permutations_are_the_documented_draws():
  key = jax.random.PRNGKey(3)
  perms = np.asarray(losses.wmse_permutations(key, 12, 3))
  for i, perm in enumerate(perms):
    np.testing.assert_array_equal(
        perm, jax.random.permutation(jax.random.fold_in(key, i), 12))
    np.testing.assert_array_equal(np.sort(perm), np.arange(12))
  assert len({tuple(p) for p in perms}) == 3  # the iterations' partitions differ


def test_wmse_depends_on_the_partition():
  z1, z2 = _views(410, 12, 4)
  a, _ = losses.wmse(z1, z2, jax.random.PRNGKey(0), w_size=6)
  b, _ = losses.wmse(z1, z2, jax.random.PRNGKey(1), w_size=6)
  assert abs(float(a) - float(b)) > 1e-4
  # One sub-batch of the whole batch: the permutation only reorders rows, the loss is the same.
  c, _ = losses.wmse(z1, z2, jax.random.PRNGKey(0), w_size=None)
  d, _ = losses.wmse(z1, z2, jax.random.PRNGKey(1), w_size=12)
  np.testing.assert_allclose(c, d, rtol=1e-5)


# eps = 0 needs a full-rank covariance (n > d); eps > 0 also handles n <= d.
@pytest.mark.parametrize('n,d,eps', [(4, 3, 0.0), (9, 7, 0.0), (9, 3, 1e-3), (4, 7, 1e-3),
                                     (9, 7, 0.5), (4, 7, 0.5)])
def test_whiten(n, d, eps):
  x = np.random.default_rng(n * d).standard_normal((n, d))
  with jax.enable_x64(True):
    w = losses.whiten(x, eps=eps)
    assert w.dtype == jnp.float64
  np.testing.assert_allclose(w, ref.whiten(x, eps), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('n,d', [(2, 3), (7, 6), (16, 5)])
@pytest.mark.parametrize('lambda_offdiag', [0.0, 5e-3, 0.2])
def test_barlow_twins(n, d, lambda_offdiag):
  z1, z2 = _views(n + 40, n, d)
  loss, aux = losses.barlow_twins(z1, z2, lambda_offdiag=lambda_offdiag)
  _close(loss, ref.barlow_twins(z1, z2, lambda_offdiag))
  _close(aux['align'] + aux['constrain'], float(loss))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('n,d', [(2, 3), (7, 6), (16, 5)])
@pytest.mark.parametrize('weights', [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 3.0, 0.5)])
def test_vicreg(n, d, weights, dtype):
  # Scale 0.3 puts some dimensions' deviations below γ = 1, so the hinge is active for some.
  z1, z2 = _views(n + 60, n, d, scale=0.3)
  sim_weight, var_weight, cov_weight = weights
  fn = lambda a, b: losses.vicreg(a, b, sim_weight=sim_weight, var_weight=var_weight,
                                  cov_weight=cov_weight)
  loss, aux = _check_against_reference(fn, (z1, z2),
                                       ref.vicreg(z1, z2, *weights), dtype)
  np.testing.assert_allclose(
      float(loss), sim_weight * float(aux['invariance']) + var_weight * float(aux['variance'])
      + cov_weight * float(aux['covariance']), rtol=1e-6)


@pytest.mark.parametrize('n,k', [(5, 3), (8, 11)])
@pytest.mark.parametrize('temperature,epsilon,iters', [(0.1, 0.05, 3), (0.5, 0.5, 1), (0.2, 0.1, 5)])
def test_swav(n, k, temperature, epsilon, iters):
  z1, z2 = _views(n + 50, n, 6)
  rng = np.random.default_rng(k)
  c = rng.standard_normal((k, 6))
  c = (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)
  loss, _ = losses.swav(z1, z2, c, temperature=temperature, epsilon=epsilon,
                        sinkhorn_iters=iters)
  _close(loss, ref.swav(z1, z2, c, temperature, epsilon, iters))


def test_sinkhorn_codes_are_equipartitioned():
  rng = np.random.default_rng(0)
  scores = rng.uniform(-1, 1, (12, 4)).astype(np.float32)
  q = np.asarray(losses.sinkhorn_knopp(scores, epsilon=0.5, num_iters=50))
  np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)           # each sample's code is a distribution
  np.testing.assert_allclose(q.sum(0), 12 / 4, rtol=1e-4)         # prototypes equally used
  np.testing.assert_allclose(q, ref.sinkhorn(scores.astype(np.float64), 0.5, 50), rtol=1e-4)


ADC_GRID = list(itertools.product([0.25, 0.5, 2.0], [2.5, 5.0, 50.0]))


@pytest.mark.parametrize('n', [2, 5])
@pytest.mark.parametrize('sigma2,rho', ADC_GRID)
def test_dcm(n, sigma2, rho):
  z1, z2 = _views(n + 60, n, 5)
  loss, _ = losses.dcm(z1, z2, sigma2=sigma2, rho=rho)
  _close(loss, ref.dcm(z1, z2, sigma2, rho))


def test_dcm_with_weights():
  z1, z2 = _views(61, 5, 5)
  w = np.random.default_rng(1).uniform(0.2, 2.0, 10).astype(np.float32)
  loss, _ = losses.dcm(z1, z2, weights=w)
  _close(loss, ref.dcm(z1, z2, 0.5, 5.0, w.astype(np.float64)))


@pytest.mark.parametrize('n', [3, 6])
@pytest.mark.parametrize('sigma2,rho', ADC_GRID[::2])
@pytest.mark.parametrize('sigma2_prior,beta', [(0.5, None), (1.0, 3.0), (0.3, 50.0)])
def test_lpm(n, sigma2, rho, sigma2_prior, beta):
  z1, z2 = _views(n + 70, n, 5)
  p1, p2 = _views(n + 80, n, 9)
  loss, aux = losses.lpm(z1, z2, p1, p2, sigma2=sigma2, sigma2_prior=sigma2_prior, rho=rho,
                         beta=beta)
  _close(loss, ref.lpm(z1, z2, p1, p2, sigma2, sigma2_prior, rho, beta))
  np.testing.assert_allclose(aux['entropy_weights'],
                             ref.entropy_weights(p1, p2, sigma2_prior, rho), rtol=RTOL)


@pytest.mark.parametrize('n', [3, 7])
@pytest.mark.parametrize('nu,upsilon', [(0.1, 0.1), (1.0, 0.0), (0.0, 2.0)])
@pytest.mark.parametrize('with_prior,entropy_weights_without_lpm',
                         [(False, False), (True, False), (True, True)])
def test_adc(n, nu, upsilon, with_prior, entropy_weights_without_lpm):
  z1, z2 = _views(n + 90, n, 5)
  p1, p2 = _views(n + 95, n, 7) if with_prior else (None, None)
  loss, aux = losses.adc(z1, z2, p1, p2, nu=nu, upsilon=upsilon,
                         entropy_weights_without_lpm=entropy_weights_without_lpm)
  _close(loss, ref.adc(z1, z2, p1, p2, nu, upsilon, 0.5, 0.5, 5.0,
                       entropy_weights_without_lpm=entropy_weights_without_lpm))
  if 'lpm' in aux:  # the reported terms are the unweighted pieces of the total
    _close(nu * aux['dcm'] + upsilon * aux['lpm'], float(loss))
  # LPM (and with it the entropy weights) is on exactly when a prior is given and υ != 0, or the
  # option keeps the weights at υ = 0.
  assert ('lpm' in aux) == (with_prior and (upsilon != 0 or entropy_weights_without_lpm))


def test_adc_dcm_only_ablation():
  """docs/maths.md §3: υ = 0 means unit DCM weights even with a prior; the option keeps the weighted form."""
  z1, z2 = _views(97, 6, 5)
  p1, p2 = _views(98, 6, 7)
  unit = float(losses.dcm(z1, z2)[0])
  weighted = ref.dcm(z1, z2, 0.5, 5.0, ref.entropy_weights(p1, p2, 0.5, 5.0))
  assert abs(unit - weighted) > 1e-3 * unit  # the forms differ far beyond the tolerance 1e-5
  _close(losses.adc(z1, z2, p1, p2, nu=1.0, upsilon=0.0)[0], unit)
  _close(losses.adc(z1, z2, nu=1.0, upsilon=0.0)[0], unit)  # the prior is not needed
  _close(losses.adc(z1, z2, p1, p2, nu=1.0, upsilon=0, entropy_weights_without_lpm=True)[0],
         weighted)
  with pytest.raises(ValueError, match='entropy_weights_without_lpm.*needs prior'):
    losses.adc(z1, z2, nu=1.0, upsilon=0.0, entropy_weights_without_lpm=True)
  # A traced υ cannot be compared with 0 at trace time: the weighted path (+ υ·LPM) is kept.
  traced = jax.jit(lambda u: losses.adc(z1, z2, p1, p2, nu=1.0, upsilon=u)[0])(0.0)
  _close(traced, weighted)


def test_cross_entropy():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((7, 5)).astype(np.float32)
  labels = rng.integers(0, 5, 7).astype(np.int32)
  loss, aux = losses.cross_entropy(logits, labels)
  x = logits.astype(np.float64)
  expected = np.mean([-(x[i, labels[i]] - np.log(np.sum(np.exp(x[i])))) for i in range(7)])
  _close(loss, expected)
  _close(aux['accuracy'], np.mean(np.argmax(x, 1) == labels))
