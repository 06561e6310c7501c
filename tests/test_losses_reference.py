"""Every loss against its float64 NumPy reference (tests/reference_losses.py), float32 in, rtol 1e-5."""

import itertools

import jax
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


@pytest.mark.parametrize('n,d', [(2, 3), (7, 6), (16, 5)])
@pytest.mark.parametrize('lambda_offdiag', [0.0, 5e-3, 0.2])
def test_barlow_twins(n, d, lambda_offdiag):
  z1, z2 = _views(n + 40, n, d)
  loss, aux = losses.barlow_twins(z1, z2, lambda_offdiag=lambda_offdiag)
  _close(loss, ref.barlow_twins(z1, z2, lambda_offdiag))
  _close(aux['align'] + aux['constrain'], float(loss))


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
@pytest.mark.parametrize('with_prior', [False, True])
def test_adc(n, nu, upsilon, with_prior):
  z1, z2 = _views(n + 90, n, 5)
  p1, p2 = _views(n + 95, n, 7) if with_prior else (None, None)
  loss, aux = losses.adc(z1, z2, p1, p2, nu=nu, upsilon=upsilon)
  _close(loss, ref.adc(z1, z2, p1, p2, nu, upsilon, 0.5, 0.5, 5.0))
  if with_prior:  # the reported terms are the unweighted pieces of the total
    _close(nu * aux['dcm'] + upsilon * aux['lpm'], float(loss))


def test_cross_entropy():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((7, 5)).astype(np.float32)
  labels = rng.integers(0, 5, 7).astype(np.int32)
  loss, aux = losses.cross_entropy(logits, labels)
  x = logits.astype(np.float64)
  expected = np.mean([-(x[i, labels[i]] - np.log(np.sum(np.exp(x[i])))) for i in range(7)])
  _close(loss, expected)
  _close(aux['accuracy'], np.mean(np.argmax(x, 1) == labels))
