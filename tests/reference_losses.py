"""Independent float64 NumPy references of every loss, written from docs/maths.md row by row.

Nothing here imports glf_jax: these are the formulas spelled out with explicit loops over
anchors, so a shared mistake with the vectorised library is unlikely.
"""

import math

import numpy as np
from scipy.special import gammaln, logsumexp


def _f64(*arrays):
  return [np.asarray(a, dtype=np.float64) for a in arrays]


def _normalise(v):
  n = np.linalg.norm(v)
  return v / n if n > 1e-12 else v / 1e-12


def sim(u, v, kind):
  if kind == 'cosine':
    return float(np.dot(_normalise(u), _normalise(v)))
  if kind == 'dot':
    return float(np.dot(u, v))
  if kind == 'neg_sq_euclidean':
    return -float(np.sum((u - v) ** 2))
  raise ValueError(kind)


def _rows(z1, z2):
  z1, z2 = _f64(z1, z2)
  z = np.concatenate([z1, z2])
  m = len(z)
  return z, m, lambda i: (i + m // 2) % m


def nt_xent(z1, z2, temperature, similarity):
  z, m, pos = _rows(z1, z2)
  total = 0.0
  for i in range(m):
    logits = [sim(z[i], z[k], similarity) / temperature for k in range(m) if k != i]
    total += -sim(z[i], z[pos(i)], similarity) / temperature + logsumexp(logits)
  return total / m


def balanced(z1, z2, alpha, lam, similarity, include_positive):
  z, m, pos = _rows(z1, z2)
  total = 0.0
  for i in range(m):
    ks = [k for k in range(m) if k != i and (include_positive or k != pos(i))]
    lse = logsumexp([alpha * sim(z[i], z[k], similarity) for k in ks])
    total += -sim(z[i], z[pos(i)], similarity) + lam / alpha * lse
  return total / m


def nscl(z1, z2, labels, temperature, similarity):
  z, m, pos = _rows(z1, z2)
  y = np.concatenate([labels, labels])
  total = 0.0
  for i in range(m):
    s_ip = sim(z[i], z[pos(i)], similarity) / temperature
    negs = [sim(z[i], z[k], similarity) / temperature for k in range(m) if y[k] != y[i]]
    total += -s_ip + logsumexp([s_ip] + negs)
  return total / m


def supcon(z1, z2, labels, temperature, similarity='cosine'):
  z, m, _ = _rows(z1, z2)
  y = np.concatenate([labels, labels])
  total = 0.0
  for i in range(m):
    denom = logsumexp([sim(z[i], z[a], similarity) / temperature for a in range(m) if a != i])
    positives = [p for p in range(m) if p != i and y[p] == y[i]]
    total += -np.mean([sim(z[i], z[p], similarity) / temperature - denom for p in positives])
  return total / m


def byol(p1, p2, t1, t2):
  """``L + L~``: the two directions' batch means, summed (BYOL eq. 2, solo-learn)."""
  p1, p2, t1, t2 = _f64(p1, p2, t1, t2)
  l12 = np.mean([2 - 2 * sim(p1[n], t2[n], 'cosine') for n in range(len(p1))])
  l21 = np.mean([2 - 2 * sim(p2[n], t1[n], 'cosine') for n in range(len(p2))])
  return float(l12 + l21)


def simsiam(p1, p2, z1, z2):
  """``½ D(p1, z2) + ½ D(p2, z1)``, ``D(p, z) = -mean_n cos(p_n, z_n)``."""
  p1, p2, z1, z2 = _f64(p1, p2, z1, z2)
  d12 = -np.mean([sim(p1[n], z2[n], 'cosine') for n in range(len(p1))])
  d21 = -np.mean([sim(p2[n], z1[n], 'cosine') for n in range(len(p2))])
  return float(0.5 * d12 + 0.5 * d21)


def mocov3(q1, q2, k1, k2, temperature):
  """solo-learn's ``mocov3_loss_func(q1, k2) + mocov3_loss_func(q2, k1)`` on one process."""
  q1, q2, k1, k2 = _f64(q1, q2, k1, k2)

  def ctr(q, k):
    total = 0.0
    for i in range(len(q)):
      logits = [sim(q[i], k[j], 'cosine') / temperature for j in range(len(k))]
      total += -(logits[i] - logsumexp(logits))  # cross-entropy, target class i
    return 2 * temperature * total / len(q)

  return ctr(q1, k2) + ctr(q2, k1)


def whiten(x, eps):
  """Rows ``L^{-1} xc_r`` with ``L = cholesky(Σ_r xc_r xc_rᵀ / (n-1) + eps·I)``."""
  x, = _f64(x)
  n, d = x.shape
  mean = sum(x[r] for r in range(n)) / n
  xc = [x[r] - mean for r in range(n)]
  cov = sum(np.outer(v, v) for v in xc) / (n - 1) + eps * np.eye(d)
  chol = np.linalg.cholesky(cov)
  return np.stack([np.linalg.solve(chol, v) for v in xc])


def wmse(z1, z2, perms, w_size, eps):
  """W-MSE on the given partitions: ``perms [w_iter, N]``, sub-batches of ``w_size`` consecutive
  entries; each view's rows of a sub-batch whitened separately (htdt/self-supervised)."""
  z1, z2 = _f64(z1, z2)
  perms = np.asarray(perms)
  total = 0.0
  for perm in perms:
    w1, w2 = np.zeros_like(z1), np.zeros_like(z2)
    for start in range(0, len(perm), w_size):
      idx = perm[start:start + w_size]
      w1[idx] = whiten(z1[idx], eps)
      w2[idx] = whiten(z2[idx], eps)
    total += 2 - 2 * np.mean([sim(w1[n], w2[n], 'cosine') for n in range(len(z1))])
  return total / len(perms)


def barlow_twins(z1, z2, lambda_offdiag, eps=1e-5):
  z1, z2 = _f64(z1, z2)
  n, d = z1.shape
  a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + eps)
  b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + eps)
  loss = 0.0
  for p in range(d):
    for q in range(d):
      c = sum(a[k, p] * b[k, q] for k in range(n)) / n
      loss += (1 - c) ** 2 if p == q else lambda_offdiag * c ** 2
  return loss


def vicreg(z1, z2, sim_weight, var_weight, cov_weight, gamma=1.0, eps=1e-4):
  """VICReg eq. 6: λ·MSE + μ·Σ_views mean_d relu(γ - sqrt(var_d + ε)) + ν·Σ_views Σ_{p≠q} C_pq² / D,
  variances and covariances unbiased (N - 1)."""
  z1, z2 = _f64(z1, z2)
  n, d = z1.shape
  invariance = sum((z1[i, j] - z2[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

  def variance(z):
    total = 0.0
    for j in range(d):
      mean = sum(z[i, j] for i in range(n)) / n
      var = sum((z[i, j] - mean) ** 2 for i in range(n)) / (n - 1)
      total += max(0.0, gamma - math.sqrt(var + eps))
    return total / d

  def covariance(z):
    means = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
    total = 0.0
    for p in range(d):
      for q in range(d):
        if p != q:
          c = sum((z[i, p] - means[p]) * (z[i, q] - means[q]) for i in range(n)) / (n - 1)
          total += c * c
    return total / d
  return (sim_weight * invariance + var_weight * (variance(z1) + variance(z2))
          + cov_weight * (covariance(z1) + covariance(z2)))


def sinkhorn(scores, epsilon, iters):
  """SwAV's reference algorithm (prototypes x samples, in linear space)."""
  q = np.exp(scores / epsilon).T
  q /= q.sum()
  k, b = q.shape
  for _ in range(iters):
    q /= q.sum(axis=1, keepdims=True)
    q /= k
    q /= q.sum(axis=0, keepdims=True)
    q /= b
  return (q * b).T


def swav(z1, z2, prototypes, temperature, epsilon, iters, target=None):
  """``target=(t1, t2)``: codes from other rows (the codes are a stop-gradient constant)."""
  z1, z2, c = _f64(z1, z2, prototypes)
  scores = lambda z: np.stack([_normalise(v) for v in z]) @ c.T
  s1, s2 = scores(z1), scores(z2)
  t1, t2 = (s1, s2) if target is None else map(scores, _f64(*target))
  q1, q2 = sinkhorn(t1, epsilon, iters), sinkhorn(t2, epsilon, iters)

  def log_softmax(x):
    return x - logsumexp(x)

  total = 0.0
  for n in range(len(z1)):
    total += -np.sum(q2[n] * log_softmax(s1[n] / temperature))
    total += -np.sum(q1[n] * log_softmax(s2[n] / temperature))
  return total / (2 * len(z1))


def _neighbour_distributions(x, kernel):
  """Row-normalised kernel over j != i, as dicts row -> {j: prob}."""
  x = np.stack([_normalise(v) for v in _f64(x)[0]])
  m = len(x)
  out = []
  for i in range(m):
    w = {j: kernel(float(np.sum((x[i] - x[j]) ** 2))) for j in range(m) if j != i}
    total = sum(w.values())
    out.append({j: v / total for j, v in w.items()})
  return out


def gaussian(sigma2):
  return lambda d: math.exp(-d / (2 * sigma2))


def student_t(sigma2, rho):
  return lambda d: (1 + d / (rho * sigma2)) ** (-(rho + 1) / 2)


def entropy_weights(prior1, prior2, sigma2_prior, rho):
  r = _neighbour_distributions(np.concatenate(_f64(prior1, prior2)), student_t(sigma2_prior, rho))
  h = np.array([-sum(p * math.log(p) for p in row.values()) for row in r])
  inv = 1 / h
  return inv / inv.mean()


def dcm(z1, z2, sigma2, rho, weights=None, target=None):
  """``target=(t1, t2)`` computes the Gaussian P on other rows: the stop-gradient semantics for
  finite differences (P is a constant of the step)."""
  z = np.concatenate(_f64(z1, z2))
  p = _neighbour_distributions(z if target is None else np.concatenate(_f64(*target)),
                               gaussian(sigma2))
  q = _neighbour_distributions(z, student_t(sigma2, rho))
  m = len(z)
  w = np.ones(m) if weights is None else weights
  kl = [sum(p[i][j] * (math.log(p[i][j]) - math.log(q[i][j])) for j in p[i]) for i in range(m)]
  return float(np.mean(w * np.array(kl)))


def lpm(z1, z2, prior1, prior2, sigma2, sigma2_prior, rho, beta=None):
  z = np.concatenate(_f64(z1, z2))
  m = len(z)
  beta = m - 1 if beta is None else beta
  q = _neighbour_distributions(z, student_t(sigma2, rho))
  r = _neighbour_distributions(np.concatenate(_f64(prior1, prior2)), student_t(sigma2_prior, rho))
  total = 0.0
  for i in range(m):
    alpha = {j: 1 + beta * r[i][j] for j in r[i]}
    log_dir = (gammaln(sum(alpha.values())) - sum(gammaln(a) for a in alpha.values())
               + sum((alpha[j] - 1) * math.log(q[i][j]) for j in alpha))
    total += log_dir
  return -total / (m * beta)


def adc(z1, z2, prior1, prior2, nu, upsilon, sigma2, sigma2_prior, rho, beta=None, target=None,
        entropy_weights_without_lpm=False):
  """Unit DCM weights without a prior and with ``upsilon = 0`` (the DCM-only ablation, docs/maths.md §3),
  unless ``entropy_weights_without_lpm``."""
  if prior1 is None or (upsilon == 0 and not entropy_weights_without_lpm):
    return nu * dcm(z1, z2, sigma2, rho, target=target)
  w = entropy_weights(prior1, prior2, sigma2_prior, rho)
  return (nu * dcm(z1, z2, sigma2, rho, w, target=target)
          + upsilon * lpm(z1, z2, prior1, prior2, sigma2, sigma2_prior, rho, beta))
