"""Each loss on a global batch sharded over 8 simulated CPU devices equals the 1-device value.

``conftest.py`` sets ``jax_num_cpu_devices = 8`` before JAX starts. The global batch supplies the
negatives: the sharded and unsharded computations see the same ``M`` rows.
"""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from glf_jax import losses

N, D = 16, 6
_RNG = np.random.default_rng(0)
LABELS = _RNG.integers(0, 4, N).astype(np.int32)
PRIORS = [_RNG.standard_normal((N, 5)).astype(np.float32) for _ in range(2)]
TARGETS = [_RNG.standard_normal((N, D)).astype(np.float32) for _ in range(2)]
PROTOTYPES = _RNG.standard_normal((9, D)).astype(np.float32)
WMSE_KEY = jax.random.PRNGKey(7)

# name -> (loss of (z1, z2, *batch_extras, *replicated_extras), batch_extras sharded on rows[,
# replicated_extras: put whole on every device])
CASES = {
    'nt_xent': (lambda a, b, **k: losses.nt_xent(a, b, **k), ()),
    'nt_xent_euclid': (lambda a, b, **k: losses.nt_xent(a, b, similarity='neg_sq_euclidean', **k), ()),
    'balanced': (lambda a, b, **k: losses.balanced_contrastive(a, b, **k), ()),
    'nscl': (lambda a, b, y, **k: losses.nscl(a, b, y, **k), (LABELS,)),
    'supcon': (lambda a, b, y, **k: losses.supcon(a, b, y, **k), (LABELS,)),
    'byol': (lambda a, b, t1, t2: losses.byol(a, b, t1, t2), tuple(TARGETS)),
    'simsiam': (lambda a, b, z1, z2: losses.simsiam(a, b, z1, z2), tuple(TARGETS)),
    'mocov3': (lambda a, b, k1, k2: losses.mocov3(a, b, k1, k2), tuple(TARGETS)),
    'wmse': (lambda a, b, key: losses.wmse(a, b, key, w_size=8, w_iter=2), (), (WMSE_KEY,)),
    'barlow_twins': (lambda a, b: losses.barlow_twins(a, b), ()),
    'vicreg': (lambda a, b: losses.vicreg(a, b), ()),
    'swav': (lambda a, b: losses.swav(a, b, PROTOTYPES), ()),
    'dcm': (lambda a, b, **k: losses.dcm(a, b, **k), ()),
    'lpm': (lambda a, b, p1, p2, **k: losses.lpm(a, b, p1, p2, **k), tuple(PRIORS)),
    'adc': (lambda a, b, p1, p2, **k: losses.adc(a, b, p1, p2, nu=1.0, upsilon=1.0, **k),
            tuple(PRIORS)),
}
BLOCKWISE = ['nt_xent', 'balanced', 'nscl', 'supcon', 'dcm', 'lpm', 'adc']


def _value_and_grads(fn, z1, z2, extras, **kw):
  return jax.jit(jax.value_and_grad(lambda a, b, *e: fn(a, b, *e, **kw)[0], argnums=(0, 1)))(
      z1, z2, *extras)


def _check_sharded_equals_single(name, **kw):
  assert len(jax.devices()) == 8
  fn, extras, *replicated = CASES[name]
  replicated = tuple(replicated[0]) if replicated else ()
  z1, z2 = [np.random.default_rng(s).standard_normal((N, D)).astype(np.float32) for s in (1, 2)]
  single = jax.devices()[0]
  args = [jax.device_put(x, single) for x in (z1, z2, *extras, *replicated)]
  value_1, grads_1 = _value_and_grads(fn, *args[:2], args[2:], **kw)

  mesh = Mesh(np.array(jax.devices()), ('data',))
  rows = NamedSharding(mesh, P('data'))
  sharded = ([jax.device_put(x, rows) for x in (z1, z2, *extras)]
             + [jax.device_put(x, NamedSharding(mesh, P())) for x in replicated])
  assert len(sharded[0].sharding.device_set) == 8
  value_8, grads_8 = _value_and_grads(fn, *sharded[:2], sharded[2:], **kw)

  np.testing.assert_allclose(value_8, value_1, rtol=1e-5)
  for g8, g1 in zip(grads_8, grads_1):
    np.testing.assert_allclose(g8, g1, rtol=1e-5, atol=1e-7)
  # The global batch supplies the negatives (W-MSE: the sub-batches span shards): a per-shard
  # loss would differ. Per-row regression losses have nothing to gather.
  local_rows = 8 if name == 'wmse' else 2  # one W-MSE sub-batch
  local, _ = fn(z1[:local_rows], z2[:local_rows], *[e[:local_rows] for e in extras], *replicated,
                **kw)
  if name not in ('byol', 'simsiam'):
    assert abs(float(local) - float(value_1)) > 1e-4


@pytest.mark.parametrize('name', sorted(CASES))
def test_sharded_equals_single_device(name):
  _check_sharded_equals_single(name)


@pytest.mark.parametrize('name', BLOCKWISE)
def test_sharded_blockwise_equals_single_device(name):
  _check_sharded_equals_single(name, block_size=5)
