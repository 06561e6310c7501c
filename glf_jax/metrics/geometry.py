"""Geometry of an embedding: class clusters, alignment/uniformity and prototype bias.

* ``class_geometry``: within-class compactness vs between-class separability (cosine).
* ``alignment_uniformity``: Wang & Isola, 2020, "Understanding Contrastive Representation
  Learning through Alignment and Uniformity on the Hypersphere", ICML.
* ``prototype_bias``: the surrogate-prototype bias of arXiv 2510.10572.

Labels are used for evaluation only. Every row is l2-normalised first (a zero row stays zero;
``prototype_bias`` can also work on raw rows).
Inputs may be NumPy or JAX arrays; results are Python floats/ints.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from glf_jax.losses.similarity import l2_normalize
from glf_jax.metrics.representation import _check_matrix, _check_same_rows, _compute_dtype


def _check_labels(labels, n, what):
  shape = np.shape(labels)
  if len(shape) != 1:
    raise ValueError(f'labels must be a 1-D [n] array, got shape {shape}')
  if shape[0] != n:
    raise ValueError(f'labels has {shape[0]} entries but {what} has {n} samples')
  return np.asarray(labels)


def _class_means(x, labels):
  """Per-class means of the rows of ``x`` and the index of each sample's class."""
  classes, inverse = np.unique(labels, return_inverse=True)
  sums = np.zeros((len(classes), x.shape[1]))
  np.add.at(sums, inverse, x)
  counts = np.bincount(inverse, minlength=len(classes))
  return sums / counts[:, None], inverse


def class_geometry(h, labels) -> dict:
  """Cosine compactness and separability of the classes in an embedding.

  Rows of ``h`` are l2-normalised and ``c_y`` is the mean of the normalised rows of class ``y``.

  * ``compactness``: mean over samples of ``1 - cos(h_i, c_{y_i})`` (0 for collapsed classes).
  * ``separability_mean`` / ``separability_min``: mean / min of ``1 - cos(c_a, c_b)`` over all
    unordered class pairs ``a < b``.
  * ``ratio``: ``compactness / separability_mean`` (lower is better; ``inf`` if all centroids
    point the same way). A zero centroid has cosine 0 to everything.

  Computed on the host in float64.

  Args:
    h: ``[n, d]`` embeddings.
    labels: ``[n]`` class labels (any sortable values), at least two distinct.

  Returns:
    Dict of floats with keys ``compactness``, ``separability_mean``, ``separability_min``,
    ``ratio``.
  """
  n, _ = _check_matrix('h', h)
  labels = _check_labels(labels, n, 'h')
  u = l2_normalize(np.asarray(h, dtype=np.float64))
  centroids, inverse = _class_means(u, labels)
  if len(centroids) < 2:
    raise ValueError(f'class_geometry needs at least 2 classes, got {len(centroids)}')
  unit_centroids = l2_normalize(np.asarray(centroids, dtype=np.float64))
  compactness = float(np.mean(1.0 - np.sum(u * unit_centroids[inverse], axis=1)))
  a, b = np.triu_indices(len(centroids), k=1)
  separations = 1.0 - np.sum(unit_centroids[a] * unit_centroids[b], axis=1)
  sep_mean = float(np.mean(separations))
  with np.errstate(divide='ignore', invalid='ignore'):
    ratio = float(np.float64(compactness) / sep_mean)
  return {
      'compactness': compactness,
      'separability_mean': sep_mean,
      'separability_min': float(np.min(separations)),
      'ratio': ratio,
  }


@jax.jit
def _alignment_uniformity(h1, h2, alpha, t):
  z = l2_normalize(jnp.concatenate([h1, h2], axis=0))
  m = z.shape[0]
  u1, u2 = z[: m // 2], z[m // 2 :]
  # Norm of the difference itself, not 2 - 2 cos, so near-identical views do not cancel (equal
  # views give ~1e-15 in float32, not exactly 0: XLA may vectorise the row norms differently).
  alignment = jnp.mean(jnp.sum(jnp.square(u1 - u2), axis=1) ** (alpha / 2))
  sq_norms = jnp.sum(jnp.square(z), axis=1)
  gram = jnp.matmul(z, z.T, precision=jax.lax.Precision.HIGHEST)
  sq_dists = jnp.maximum(sq_norms[:, None] + sq_norms[None, :] - 2 * gram, 0)
  # Sum over i != j counts each unordered pair twice, hence the m (m - 1) normaliser.
  logits = jnp.where(jnp.eye(m, dtype=bool), -jnp.inf, -t * sq_dists)
  uniformity = jax.nn.logsumexp(logits) - jnp.log(m * (m - 1.0))
  return alignment, uniformity


def alignment_uniformity(h1, h2, *, alpha: float = 2, t: float = 2) -> dict:
  """Alignment and uniformity of two views on the hypersphere (Wang & Isola, 2020).

  After l2-normalising rows:

  * ``alignment = mean_i |h1_i - h2_i|_2^alpha`` over the ``N`` positive pairs (lower is better).
  * ``uniformity = log mean_{i<j} exp(-t |x_i - x_j|_2^2)`` over all distinct pairs of the ``2N``
    rows of ``concat(h1, h2)``: both views are pooled into one sample of the embedding
    distribution (the paper's loss averages the per-view terms instead; pooling also counts
    the cross-view pairs, including the positives). Lower is more uniform. Evaluated with a
    logsumexp, so it stays finite for large ``t``.

  Computed in float32 (float64 for float64 inputs with ``jax_enable_x64``); uses ``O(N^2)``
  memory.

  Args:
    h1: ``[N, d]`` first-view embeddings.
    h2: ``[N, d]`` second-view embeddings, row ``i`` the positive of ``h1[i]``.
    alpha: exponent of the alignment distance (``> 0``).
    t: uniformity temperature (``> 0``).

  Returns:
    Dict of floats with keys ``alignment`` and ``uniformity``.
  """
  for name, value in (('alpha', alpha), ('t', t)):
    try:
      ok = np.ndim(value) == 0 and np.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
      ok = False
    if not ok:
      raise ValueError(f'{name} must be a finite number > 0, got {value!r}')
  shape1 = _check_matrix('h1', h1)
  shape2 = _check_matrix('h2', h2)
  _check_same_rows(('h1', 'h2'), h1, h2)
  if shape1[1] != shape2[1]:
    raise ValueError(f'h1 and h2 must have the same feature dimension, got {shape1} and {shape2}')
  dtype = _compute_dtype(h1, h2)
  alignment, uniformity = _alignment_uniformity(
      jnp.asarray(h1, dtype), jnp.asarray(h2, dtype), float(alpha), float(t))
  return {'alignment': float(alignment), 'uniformity': float(uniformity)}


def prototype_bias(features, labels, *, normalize: bool = True, clean=None) -> dict:
  """Distance between surrogate and true class prototypes (arXiv 2510.10572).

  Each feature ``f(T_k(x))`` is l2-normalised (``normalize=False``: used raw, as the paper's
  values, e.g. 36.72, are); the surrogate prototype of an image is ``m_x = mean_k f(T_k(x))``
  over its ``K`` augmentations, the true prototype of a class is ``mu_y = mean_{x in y} m_x``,
  and ``bias = mean_x |m_x - mu_{y(x)}|_2``. It is 0 when every augmentation of every image of a
  class embeds to the same direction (the same point, raw).

  With ``clean`` (the features ``f(x)`` of the same images, not augmented) the true prototype is
  the class mean of those instead, ``mu_y = mean_{x in y} f(x)``: the paper's class-conditional
  expectation read over the data rather than over its views. The two readings differ by how far
  the views move a class's mean away from its images' (a shift the first reading cancels).

  ``surrogate_norm`` is ``mean_x |m_x|_2``: with normalised features, 1 when every view of an
  image embeds to one direction and smaller the more its views disagree. Views that disagree more
  pull every ``m_x`` towards the origin, and the distances between them shrink with it: a bias
  that falls while ``surrogate_norm`` falls as much is that shrinkage, not a closer prototype.

  Computed on the host in float64.

  Args:
    features: ``[n, K, d]`` features of ``K`` augmentations of ``n`` images.
    labels: ``[n]`` class labels (any sortable values).
    clean: optional ``[n, d]`` features of the un-augmented images (normalised like
      ``features``).

  Returns:
    Dict with ``bias`` (float), ``surrogate_norm`` (float), ``num_augmentations`` (``K``) and
    ``num_samples`` (``n``).
  """
  shape = np.shape(features)
  if len(shape) != 3:
    raise ValueError(f'features must be a 3-D [n, K, d] array, got shape {shape}')
  n, k, d = shape
  if n < 2 or k < 1 or d < 1:
    raise ValueError(f'features needs n >= 2 samples, K >= 1 views and d >= 1, got shape {shape}')
  labels = _check_labels(labels, n, 'features')
  f = np.asarray(features, dtype=np.float64)
  if normalize:
    f = l2_normalize(f, axis=2)
  surrogate = f.mean(axis=1)
  if clean is None:
    prototypes, inverse = _class_means(surrogate, labels)
  else:
    if np.shape(clean) != (n, d):
      raise ValueError(f'clean must be the [n, d] = [{n}, {d}] features of the same images, '
                       f'got shape {np.shape(clean)}')
    c = np.asarray(clean, dtype=np.float64)
    prototypes, inverse = _class_means(l2_normalize(c, axis=1) if normalize else c, labels)
  bias = np.mean(np.linalg.norm(surrogate - prototypes[inverse], axis=1))
  return {'bias': float(bias),
          'surrogate_norm': float(np.mean(np.linalg.norm(surrogate, axis=1))),
          'num_augmentations': int(k), 'num_samples': int(n)}
