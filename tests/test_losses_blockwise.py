"""The memory-bounded blockwise form equals the dense form and never holds an M x M buffer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glf_jax import losses

_RNG = np.random.default_rng(3)
N, D = 11, 5  # M = 22: blocks of 4 and 7 leave a ragged last block
LABELS = _RNG.integers(0, 3, N).astype(np.int32)
PRIORS = [_RNG.standard_normal((N, 7)).astype(np.float32) for _ in range(2)]

BLOCKWISE_LOSSES = {
    'nt_xent': lambda a, b, **k: losses.nt_xent(a, b, **k),
    'nt_xent_dot': lambda a, b, **k: losses.nt_xent(a, b, similarity='dot', **k),
    'balanced': lambda a, b, **k: losses.balanced_contrastive(a, b, **k),
    'balanced_euclid': lambda a, b, **k: losses.balanced_contrastive(
        a, b, similarity='neg_sq_euclidean', include_positive=True, **k),
    'nscl': lambda a, b, **k: losses.nscl(a, b, LABELS, **k),
    'supcon': lambda a, b, **k: losses.supcon(a, b, LABELS, **k),
    'dcm': lambda a, b, **k: losses.dcm(a, b, **k),
    'lpm': lambda a, b, **k: losses.lpm(a, b, *PRIORS, **k),
    'adc': lambda a, b, **k: losses.adc(a, b, *PRIORS, **k),
}


@pytest.mark.parametrize('name', sorted(BLOCKWISE_LOSSES))
@pytest.mark.parametrize('block_size', [1, 4, 7, 22, 64])
def test_blockwise_equals_dense(name, block_size):
  fn = BLOCKWISE_LOSSES[name]
  z1, z2 = [np.random.default_rng(s).standard_normal((N, D)).astype(np.float32) for s in (5, 6)]
  dense, dense_aux = fn(z1, z2)
  blocked, blocked_aux = fn(z1, z2, block_size=block_size)
  np.testing.assert_allclose(blocked, dense, rtol=1e-5)  # float32 summation order differs between the forms
  for key in dense_aux:
    np.testing.assert_allclose(blocked_aux[key], dense_aux[key], rtol=1e-5, atol=1e-7)
  g_dense = jax.grad(lambda a, b: fn(a, b)[0], argnums=(0, 1))(z1, z2)
  g_block = jax.grad(lambda a, b: fn(a, b, block_size=block_size)[0], argnums=(0, 1))(z1, z2)
  for x, y in zip(g_dense, g_block):
    np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('block_size', [0, -3, 2.5, True])
def test_bad_block_size_is_rejected(block_size):
  z = np.ones((4, 3), np.float32)
  with pytest.raises(ValueError, match='block_size'):
    losses.nt_xent(z, z, block_size=block_size)


def _compiled_temp_bytes(fn, m, d, **kw):
  z = jax.ShapeDtypeStruct((m // 2, d), jnp.float32)
  grad = jax.value_and_grad(lambda a, b: fn(a, b, **kw)[0], argnums=(0, 1))
  return jax.jit(grad).lower(z, z).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize('name', ['nt_xent', 'balanced', 'dcm', 'adc'])
def test_blockwise_backward_never_holds_an_m_by_m_buffer(name):
  """XLA's own buffer assignment for forward+backward: dense needs M x M floats, blockwise not."""
  m, d = 8192, 16
  matrix_bytes = m * m * 4
  fn = BLOCKWISE_LOSSES[name] if name != 'adc' else (
      lambda a, b, **k: losses.adc(a, b, a * 2, b * 2, **k))
  block_bytes = 256 * m * 4
  assert _compiled_temp_bytes(fn, m, d) >= matrix_bytes
  # A bounded number of block x M buffers (ADC keeps ~10 per block), far below one M x M.
  assert _compiled_temp_bytes(fn, m, d, block_size=256) < min(16 * block_bytes, matrix_bytes / 2)


@pytest.mark.optimized  # runs far longer than it compiles
def test_blockwise_runs_at_m_32768():
  """Dense forward+backward would need ~8.6 GB of M x M buffers here; blockwise runs in < 1 GB."""
  m, d = 32768, 16
  assert _compiled_temp_bytes(losses.nt_xent, m, d) > 2 * m * m * 4  # two M x M float32 buffers
  assert _compiled_temp_bytes(losses.nt_xent, m, d, block_size=1024) < 1e9
  rng = np.random.default_rng(0)
  z1 = rng.standard_normal((m // 2, d)).astype(np.float32)
  z2 = z1 + 0.1 * rng.standard_normal((m // 2, d)).astype(np.float32)
  step = jax.jit(jax.value_and_grad(
      lambda a, b: losses.nt_xent(a, b, block_size=1024)[0], argnums=(0, 1)))
  value, (g1, g2) = step(z1, z2)
  assert np.isfinite(float(value)) and np.all(np.isfinite(g1)) and np.all(np.isfinite(g2))
  # Positives are near-copies, so the loss sits well below the uniform-guess level log(M - 1).
  assert float(value) < np.log(m - 1)
