"""Tests for glf_jax.metrics against independent float64 NumPy/SciPy references."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.spatial.distance
import scipy.special
import scipy.stats

from glf_jax import metrics

RTOL = 1e-5
SIZES = [(7, 3, 5), (33, 16, 4), (128, 24, 40)]  # (n, d1, d2), odd n included


def _rng(seed):
  return np.random.default_rng(seed)


def _pair(seed, n, d1, d2, *, coupled=True):
  """float32 ``x [n, d1]`` and ``y [n, d2]``; ``coupled`` makes y a noisy linear map of x."""
  rng = _rng(seed)
  x = rng.normal(size=(n, d1))
  y = rng.normal(size=(n, d2))
  if coupled:
    y = 0.7 * np.tanh(x @ rng.normal(size=(d1, d2))) + 0.5 * y
  return x.astype(np.float32), y.astype(np.float32)


# ---------------------------------------------------------------- references (float64, loops)


def ref_cka(x, y):
  """Kernel form: HSIC of centred linear Gram matrices, with the centring matrix H."""
  x, y = np.float64(x), np.float64(y)
  n = x.shape[0]
  h = np.eye(n) - np.ones((n, n)) / n
  kc = h @ (x @ x.T) @ h
  lc = h @ (y @ y.T) @ h
  return np.trace(kc @ lc) / math.sqrt(np.trace(kc @ kc) * np.trace(lc @ lc))


def ref_rsa(x, y, method):
  dx = scipy.spatial.distance.pdist(np.float64(x), 'cosine')
  dy = scipy.spatial.distance.pdist(np.float64(y), 'cosine')
  if method == 'pearson':
    return scipy.stats.pearsonr(dx, dy)[0]
  return scipy.stats.spearmanr(dx, dy)[0]


def ref_weight_gap(tree_a, tree_b, min_ndim=2):
  total = 0.0
  for key in tree_a:
    if isinstance(tree_a[key], dict):
      total += ref_weight_gap(tree_a[key], tree_b[key], min_ndim)
      continue
    a, b = np.float64(tree_a[key]), np.float64(tree_b[key])
    if a.ndim < min_ndim:
      continue
    na, nb = math.sqrt(np.sum(a * a)), math.sqrt(np.sum(b * b))
    if na == 0 and nb == 0:
      continue
    total += math.sqrt(np.sum((a - b) ** 2)) / (0.5 * (na + nb))
  return total


def _unit(v):
  return v / math.sqrt(sum(c * c for c in v))


def _cos_dist(a, b):
  return 1.0 - float(np.dot(a, b)) / math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))


def ref_class_geometry(h, labels):
  h = np.float64(h)
  classes = sorted(set(labels.tolist()))
  centroids = {}
  for c in classes:
    members = [_unit(h[i]) for i in range(len(h)) if labels[i] == c]
    centroids[c] = sum(members) / len(members)
  compactness = np.mean([_cos_dist(h[i], centroids[labels[i]]) for i in range(len(h))])
  seps = [_cos_dist(centroids[a], centroids[b]) for a, b in itertools.combinations(classes, 2)]
  return {
      'compactness': compactness,
      'separability_mean': np.mean(seps),
      'separability_min': min(seps),
      'ratio': compactness / np.mean(seps),
  }


def ref_alignment_uniformity(h1, h2, alpha, t):
  u1 = [_unit(r) for r in np.float64(h1)]
  u2 = [_unit(r) for r in np.float64(h2)]
  alignment = np.mean([np.linalg.norm(a - b) ** alpha for a, b in zip(u1, u2)])
  z = u1 + u2
  exponents = [-t * np.sum((z[i] - z[j]) ** 2) for i, j in itertools.combinations(range(len(z)), 2)]
  uniformity = scipy.special.logsumexp(exponents) - math.log(len(exponents))
  return alignment, uniformity


def ref_prototype_bias(features, labels):
  f = np.float64(features)
  surrogate = [np.mean([_unit(v) for v in f[i]], axis=0) for i in range(len(f))]
  dists = []
  for i in range(len(f)):
    same = [surrogate[j] for j in range(len(f)) if labels[j] == labels[i]]
    dists.append(np.linalg.norm(surrogate[i] - np.mean(same, axis=0)))
  return np.mean(dists)


def ref_prototype_bias_clean(features, clean, labels):
  f, c = np.float64(features), np.float64(clean)
  surrogate = [np.mean([_unit(v) for v in f[i]], axis=0) for i in range(len(f))]
  dists = []
  for i in range(len(f)):
    same = [_unit(c[j]) for j in range(len(f)) if labels[j] == labels[i]]
    dists.append(np.linalg.norm(surrogate[i] - np.mean(same, axis=0)))
  return np.mean(dists)


# ---------------------------------------------------------------- linear CKA


@pytest.mark.parametrize('n,d1,d2', SIZES)
@pytest.mark.parametrize('coupled', [True, False])
def test_cka_matches_kernel_reference(n, d1, d2, coupled):
  x, y = _pair(n + d1, n, d1, d2, coupled=coupled)
  np.testing.assert_allclose(metrics.linear_cka(x, y), ref_cka(x, y), rtol=RTOL)


def test_cka_accepts_jax_arrays_and_is_symmetric():
  x, y = _pair(1, 40, 6, 9)
  got = metrics.linear_cka(jnp.asarray(x), jnp.asarray(y))
  assert isinstance(got, float)
  np.testing.assert_allclose(got, metrics.linear_cka(y, x), rtol=RTOL)
  np.testing.assert_allclose(got, ref_cka(x, y), rtol=RTOL)


def test_cka_float64_under_x64():
  x, y = _pair(2, 31, 5, 7)
  with jax.enable_x64(True):
    got = metrics.linear_cka(np.float64(x), np.float64(y))
  np.testing.assert_allclose(got, ref_cka(x, y), rtol=1e-12)


def test_cka_self_is_one():
  x, _ = _pair(3, 64, 10, 1)
  np.testing.assert_allclose(metrics.linear_cka(x, x), 1.0, rtol=1e-6)


def test_cka_invariances():
  x, y = _pair(4, 96, 12, 8)
  base = metrics.linear_cka(x, y)
  q, _ = np.linalg.qr(_rng(5).normal(size=(12, 12)))
  np.testing.assert_allclose(metrics.linear_cka(x @ q.astype(np.float32), y), base, rtol=RTOL)
  np.testing.assert_allclose(metrics.linear_cka(3.7 * x, y), base, rtol=RTOL)
  np.testing.assert_allclose(metrics.linear_cka(x + 5.0, y), base, rtol=1e-4)
  # Anisotropic scaling is NOT an invariance: guards against the checks above being vacuous.
  scale = np.linspace(0.1, 3.0, 12).astype(np.float32)
  assert abs(metrics.linear_cka(x * scale, y) - base) > 1e-3


def test_cka_independent_is_small_dependent_is_large():
  rng = _rng(6)
  x = rng.normal(size=(4000, 8)).astype(np.float32)
  y = rng.normal(size=(4000, 8)).astype(np.float32)
  assert metrics.linear_cka(x, y) < 0.01
  mixed = x @ rng.normal(size=(8, 8)).astype(np.float32) + 0.1 * y
  assert metrics.linear_cka(x, mixed) > 0.5


def test_cka_constant_input_is_nan():
  x, _ = _pair(7, 10, 3, 1)
  assert math.isnan(metrics.linear_cka(x, np.ones((10, 4), np.float32)))


# ---------------------------------------------------------------- RSA


@pytest.mark.parametrize('n,d1,d2', SIZES)
@pytest.mark.parametrize('method', ['pearson', 'spearman'])
def test_rsa_matches_scipy(n, d1, d2, method):
  x, y = _pair(n * 3 + d2, n, d1, d2)
  np.testing.assert_allclose(metrics.rsa(x, y, method=method), ref_rsa(x, y, method), rtol=RTOL)


def test_rsa_spearman_with_ties():
  # Rows with one or two unit entries: every dot product is exact in any summation order, so
  # repeated rows give exactly tied dissimilarities in both the library and the reference.
  rng = _rng(8)
  vocab = np.array([np.eye(5)[a] + np.eye(5)[b] * (a != b) for a in range(5) for b in range(5)])
  x = vocab[rng.integers(0, len(vocab), size=15)].astype(np.float32)
  y = (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32)
  got = metrics.rsa(x, y, method='spearman')
  np.testing.assert_allclose(got, ref_rsa(x, y, 'spearman'), rtol=RTOL)
  # Ties matter: ranking ties by position instead of averaging gives another value.
  dx = scipy.spatial.distance.pdist(np.float64(x), 'cosine')
  dy = scipy.spatial.distance.pdist(np.float64(y), 'cosine')
  assert len(np.unique(dx)) < len(dx) // 2
  ordinal = scipy.stats.pearsonr(
      scipy.stats.rankdata(dx, method='ordinal'), scipy.stats.rankdata(dy, method='ordinal'))[0]
  assert abs(got - ordinal) > 1e-3


@pytest.mark.parametrize('method', ['pearson', 'spearman'])
def test_rsa_self_is_one_and_row_scale_invariant(method):
  x, y = _pair(9, 25, 6, 4)
  np.testing.assert_allclose(metrics.rsa(x, x, method=method), 1.0, rtol=1e-9)
  row_scale = _rng(10).uniform(0.1, 5.0, size=(25, 1)).astype(np.float32)
  np.testing.assert_allclose(
      metrics.rsa(x * row_scale, y, method=method), metrics.rsa(x, y, method=method), rtol=RTOL)


def test_rsa_unknown_method():
  x, y = _pair(11, 6, 3, 3)
  with pytest.raises(ValueError, match='pearson.*spearman'):
    metrics.rsa(x, y, method='kendall')


# ---------------------------------------------------------------- weight gap


def _params(seed):
  rng = _rng(seed)
  f32 = lambda *s: rng.normal(size=s).astype(np.float32)
  return {
      'conv': {'kernel': f32(3, 3, 4, 8), 'bias': f32(8)},
      'bn': {'scale': f32(8)},
      'dense': {'kernel': f32(8, 5), 'bias': f32(5)},
  }


def test_weight_gap_matches_reference():
  a, b = _params(12), _params(13)
  np.testing.assert_allclose(metrics.weight_gap(a, b), ref_weight_gap(a, b), rtol=RTOL)
  np.testing.assert_allclose(
      metrics.weight_gap(a, b, min_ndim=1), ref_weight_gap(a, b, min_ndim=1), rtol=RTOL)
  jax_b = jax.tree_util.tree_map(jnp.asarray, b)
  np.testing.assert_allclose(metrics.weight_gap(a, jax_b), ref_weight_gap(a, b), rtol=RTOL)


def test_weight_gap_identity_symmetry_and_known_value():
  a, b = _params(14), _params(15)
  assert metrics.weight_gap(a, a) == 0.0
  np.testing.assert_allclose(metrics.weight_gap(a, b), metrics.weight_gap(b, a), rtol=1e-6)
  doubled = jax.tree_util.tree_map(lambda w: 2 * w, a)
  # Each of the two matrices: |W| / (1.5 |W|) = 2/3.
  np.testing.assert_allclose(metrics.weight_gap(a, doubled), 4 / 3, rtol=1e-6)


def test_weight_gap_excludes_low_rank_leaves_by_default():
  a = _params(16)
  b = jax.tree_util.tree_map(lambda w: w if w.ndim >= 2 else w + 1.0, a)
  assert metrics.weight_gap(a, b) == 0.0
  assert metrics.weight_gap(a, b, min_ndim=1) > 0.1


def test_weight_gap_zero_layers_contribute_zero():
  a, b = _params(17), _params(18)
  for tree in (a, b):
    tree['dense']['kernel'] = np.zeros_like(tree['dense']['kernel'])
  got = metrics.weight_gap(a, b)
  assert math.isfinite(got)
  np.testing.assert_allclose(got, ref_weight_gap(a, b), rtol=RTOL)


def test_weight_gap_mismatches_raise():
  a = _params(19)
  b = _params(19)
  del b['bn']
  with pytest.raises(ValueError, match='structure'):
    metrics.weight_gap(a, b)
  c = _params(19)
  c['dense']['kernel'] = np.zeros((8, 6), np.float32)
  with pytest.raises(ValueError, match=r"dense.*kernel.*\(8, 5\).*\(8, 6\)"):
    metrics.weight_gap(a, c)
  with pytest.raises(ValueError, match='min_ndim'):
    metrics.weight_gap(a, a, min_ndim=5)
  with pytest.raises(ValueError, match='min_ndim'):
    metrics.weight_gap(a, a, min_ndim=-1)


# ---------------------------------------------------------------- class geometry


@pytest.mark.parametrize('n,d,num_classes', [(9, 4, 2), (33, 8, 3), (101, 16, 7)])
def test_class_geometry_matches_reference(n, d, num_classes):
  rng = _rng(n)
  labels = np.arange(n) % num_classes
  rng.shuffle(labels)
  means = rng.normal(size=(num_classes, d))
  h = (means[labels] + 0.8 * rng.normal(size=(n, d))).astype(np.float32)
  got = metrics.class_geometry(h, labels)
  want = ref_class_geometry(h, labels)
  assert set(got) == set(want)
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=RTOL, err_msg=key)


def test_class_geometry_collapsed_classes():
  # Classes collapsed onto the axes e0, e1 (per-sample scale must not matter) and -e0.
  labels = np.array([0, 0, 0, 1, 1, 2, 2])
  base = np.eye(3, dtype=np.float32)[[0, 0, 0, 1, 1, 0, 0]]
  base[5:] *= -1
  scale = np.array([[1.0], [2.0], [0.5], [3.0], [1.0], [4.0], [0.2]], np.float32)
  got = metrics.class_geometry(jnp.asarray(base * scale), labels)
  np.testing.assert_allclose(got['compactness'], 0.0, atol=1e-12)
  np.testing.assert_allclose(got['separability_mean'], (1 + 2 + 1) / 3, rtol=1e-12)
  np.testing.assert_allclose(got['separability_min'], 1.0, rtol=1e-12)
  assert got['ratio'] == 0.0


def test_class_geometry_invalid():
  h = _rng(20).normal(size=(6, 3)).astype(np.float32)
  with pytest.raises(ValueError, match='2 classes'):
    metrics.class_geometry(h, np.zeros(6, int))
  with pytest.raises(ValueError, match='labels'):
    metrics.class_geometry(h, np.arange(5))
  with pytest.raises(ValueError, match='labels'):
    metrics.class_geometry(h, np.zeros((6, 1), int))


# ---------------------------------------------------------------- alignment / uniformity


@pytest.mark.parametrize('n,d', [(5, 3), (17, 8), (64, 32)])
@pytest.mark.parametrize('alpha,t', [(2, 2), (1, 0.5), (3, 10.0)])
def test_alignment_uniformity_matches_reference(n, d, alpha, t):
  rng = _rng(n * d)
  h1 = rng.normal(size=(n, d)).astype(np.float32)
  h2 = (h1 + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
  got = metrics.alignment_uniformity(h1, h2, alpha=alpha, t=t)
  want_a, want_u = ref_alignment_uniformity(h1, h2, alpha, t)
  np.testing.assert_allclose(got['alignment'], want_a, rtol=RTOL)
  np.testing.assert_allclose(got['uniformity'], want_u, rtol=RTOL)


def test_alignment_uniformity_identities():
  h = _rng(21).normal(size=(20, 6)).astype(np.float32)
  # Not exactly 0: XLA's CPU row norms can differ by an ulp between rows.
  np.testing.assert_allclose(metrics.alignment_uniformity(h, h)['alignment'], 0.0, atol=1e-10)
  np.testing.assert_allclose(metrics.alignment_uniformity(h, h * 3.0)['alignment'], 0.0,
                             atol=1e-10)
  np.testing.assert_allclose(metrics.alignment_uniformity(h, -h)['alignment'], 4.0, rtol=1e-6)
  # All rows on one point: every pair has distance 0, so log mean exp(0) = 0.
  point = np.tile(np.array([[1.0, 2.0, 3.0]], np.float32), (8, 1))
  np.testing.assert_allclose(metrics.alignment_uniformity(point, point)['uniformity'], 0.0,
                             atol=1e-6)


def test_uniformity_is_stable_for_large_t():
  h1, h2 = _pair(22, 16, 4, 4)
  got = metrics.alignment_uniformity(h1, h2, t=2000.0)['uniformity']
  assert math.isfinite(got)
  np.testing.assert_allclose(got, ref_alignment_uniformity(h1, h2, 2, 2000.0)[1], rtol=1e-4)


def test_alignment_uniformity_invalid():
  h = np.ones((4, 3), np.float32)
  with pytest.raises(ValueError, match='same number of rows'):
    metrics.alignment_uniformity(h, np.ones((5, 3), np.float32))
  with pytest.raises(ValueError, match='feature dimension'):
    metrics.alignment_uniformity(h, np.ones((4, 2), np.float32))
  for kwargs in ({'alpha': 0}, {'t': -1.0}, {'t': float('nan')}):
    with pytest.raises(ValueError, match='> 0'):
      metrics.alignment_uniformity(h, h, **kwargs)


# ---------------------------------------------------------------- prototype bias


@pytest.mark.parametrize('n,k,d,num_classes', [(7, 1, 3, 2), (30, 2, 8, 3), (51, 4, 16, 5)])
def test_prototype_bias_matches_reference(n, k, d, num_classes):
  rng = _rng(n + k)
  labels = rng.integers(0, num_classes, size=n)
  feats = (rng.normal(size=(num_classes, 1, d))[labels] + rng.normal(size=(n, k, d)))
  feats = feats.astype(np.float32)
  got = metrics.prototype_bias(feats, labels)
  np.testing.assert_allclose(got['bias'], ref_prototype_bias(feats, labels), rtol=RTOL)
  lengths = [np.linalg.norm(np.mean([_unit(v) for v in np.float64(x)], axis=0)) for x in feats]
  np.testing.assert_allclose(got['surrogate_norm'], np.mean(lengths), rtol=RTOL)
  assert got['num_augmentations'] == k and got['num_samples'] == n
  assert isinstance(got['num_augmentations'], int) and isinstance(got['num_samples'], int)


@pytest.mark.parametrize('n,k,d,num_classes', [(7, 1, 3, 2), (30, 2, 8, 3), (51, 4, 16, 5)])
def test_prototype_bias_with_clean_prototypes_matches_reference(n, k, d, num_classes):
  rng = _rng(n + k + 1)
  labels = rng.integers(0, num_classes, size=n)
  clean = rng.normal(size=(num_classes, d))[labels] + rng.normal(size=(n, d))
  feats = (clean[:, None, :] + 0.5 * rng.normal(size=(n, k, d))).astype(np.float32)
  got = metrics.prototype_bias(feats, labels, clean=clean.astype(np.float32))
  np.testing.assert_allclose(got['bias'], ref_prototype_bias_clean(feats, clean, labels),
                             rtol=RTOL)
  assert abs(got['bias'] - metrics.prototype_bias(feats, labels)['bias']) > 1e-6


def test_prototype_bias_readings_differ_by_a_shift_of_the_views():
  """Views that move every image's features by one vector s: the bias against the views' class
  means does not see it; against the clean class means it becomes |s| (to within the unshifted
  bias, by the triangle inequality)."""
  rng = _rng(29)
  labels = np.repeat([0, 1, 2], 4)
  clean = np.repeat(rng.normal(size=(3, 6)), 4, axis=0)  # every image of a class alike
  shift = 3.0 * rng.normal(size=6)
  unshifted = clean[:, None, :] + 0.1 * rng.normal(size=(12, 5, 6))
  shifted = unshifted + shift
  bias = lambda f, **kw: metrics.prototype_bias(f, labels, normalize=False, **kw)['bias']
  np.testing.assert_allclose(bias(shifted), bias(unshifted), rtol=1e-12)
  small = bias(unshifted, clean=clean)
  assert small < 0.2
  assert abs(bias(shifted, clean=clean) - np.linalg.norm(shift)) <= small + 1e-12
  assert bias(shifted, clean=clean) > 10 * bias(shifted)


def test_surrogate_norm_is_the_mean_length_of_the_view_means():
  rng = _rng(31)
  labels = np.array([0, 0, 1, 1])
  same = np.repeat(rng.normal(size=(4, 1, 5)), 3, axis=1)  # every view alike: length 1
  assert metrics.prototype_bias(same, labels)['surrogate_norm'] == pytest.approx(1.0, abs=1e-12)
  e = np.eye(3)
  views = np.stack([[e[0], e[1]], [e[1], e[2]], [e[0], 2 * e[2]], [e[2], -e[2]]])
  # Two orthogonal unit views average to length 1/sqrt(2); two opposite ones to 0.
  got = metrics.prototype_bias(views, labels)['surrogate_norm']
  assert got == pytest.approx(3 / math.sqrt(2) / 4, rel=1e-12)
  raw = metrics.prototype_bias(views, labels, normalize=False)['surrogate_norm']
  assert raw == pytest.approx((2 / math.sqrt(2) + math.sqrt(5) / 2) / 4, rel=1e-12)
  # Shrinking every surrogate by c scales the bias by c (the shrinkage the norm reports).
  f = rng.normal(size=(4, 2, 3))
  a = metrics.prototype_bias(f, labels, normalize=False)
  b = metrics.prototype_bias(0.5 * f, labels, normalize=False)
  assert b['bias'] == pytest.approx(0.5 * a['bias'], rel=1e-12)
  assert b['surrogate_norm'] == pytest.approx(0.5 * a['surrogate_norm'], rel=1e-12)


def test_prototype_bias_zero_when_class_views_identical():
  rng = _rng(23)
  labels = np.array([0, 1, 0, 2, 1, 0])
  class_vecs = rng.normal(size=(3, 5))
  feats = np.repeat(class_vecs[labels][:, None, :], 3, axis=1)
  # Positive rescaling of individual views must not matter (features are normalised).
  feats = (feats * rng.uniform(0.5, 2.0, size=(6, 3, 1))).astype(np.float32)
  np.testing.assert_allclose(metrics.prototype_bias(jnp.asarray(feats), labels)['bias'], 0.0,
                             atol=1e-7)
  feats[0, 1] += 1.0  # one view differs -> nonzero bias
  assert metrics.prototype_bias(feats, labels)['bias'] > 1e-3


def test_prototype_bias_invalid():
  with pytest.raises(ValueError, match='3-D'):
    metrics.prototype_bias(np.ones((4, 3), np.float32), np.arange(4))
  with pytest.raises(ValueError, match='labels'):
    metrics.prototype_bias(np.ones((4, 2, 3), np.float32), np.arange(3))
  with pytest.raises(ValueError, match='n >= 2'):
    metrics.prototype_bias(np.ones((1, 2, 3), np.float32), np.arange(1))
  with pytest.raises(ValueError, match=r'clean must be the \[n, d\] = \[4, 3\]'):
    metrics.prototype_bias(np.ones((4, 2, 3), np.float32), np.arange(4), clean=np.ones((4, 2)))


# ---------------------------------------------------------------- shared input validation


@pytest.mark.parametrize('fn', [metrics.linear_cka, metrics.rsa, metrics.alignment_uniformity])
def test_pairwise_metrics_reject_bad_inputs(fn):
  good = np.ones((6, 3), np.float32)
  with pytest.raises(ValueError, match='2-D'):
    fn(np.ones(6, np.float32), good)
  with pytest.raises(ValueError, match='2-D'):
    fn(good, np.ones((6, 3, 1), np.float32))
  with pytest.raises(ValueError, match='same number of rows'):
    fn(good, np.ones((7, 3), np.float32))
  with pytest.raises(ValueError, match='at least'):
    fn(np.ones((1, 3), np.float32), np.ones((1, 3), np.float32))


def test_class_geometry_rejects_single_sample():
  with pytest.raises(ValueError, match='at least 2 rows'):
    metrics.class_geometry(np.ones((1, 3), np.float32), np.zeros(1, int))


def test_public_api():
  assert sorted(metrics.__all__) == sorted([
      'linear_cka', 'rsa', 'weight_gap', 'class_geometry', 'alignment_uniformity',
      'prototype_bias'])
