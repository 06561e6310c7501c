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

# name -> (loss of (z1, z2, *batch_extras), batch_extras sharded on rows, replicated extras)
CASES = {
    'nt_xent': (lambda a, b, **k: losses.nt_xent(a, b, **k), ()),
    'nt_xent_euclid': (lambda a, b, **k: losses.nt_xent(a, b, similarity='neg_sq_euclidean', **k), ()),
    'balanced': (lambda a, b, **k: losses.balanced_contrastive(a, b, **k), ()),
    'nscl': (lambda a, b, y, **k: losses.nscl(a, b, y, **k), (LABELS,)),
    'supcon': (lambda a, b, y, **k: losses.supcon(a, b, y, **k), (LABELS,)),
    'byol': (lambda a, b, t1, t2: losses.byol(a, b, t1, t2), tuple(TARGETS)),
    'barlow_twins': (lambda a, b: losses.barlow_twins(a, b), ()),
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
  fn, extras = CASES[name]
  z1, z2 = [np.random.default_rng(s).standard_normal((N, D)).astype(np.float32) for s in (1, 2)]
  single = jax.devices()[0]
  args = [jax.device_put(x, single) for x in (z1, z2, *extras)]
  value_1, grads_1 = _value_and_grads(fn, *args[:2], args[2:], **kw)

  mesh = Mesh(np.array(jax.devices()), ('data',))
  rows = NamedSharding(mesh, P('data'))
  sharded = [jax.device_put(x, rows) for x in (z1, z2, *extras)]
  assert len(sharded[0].sharding.device_set) == 8
  value_8, grads_8 = _value_and_grads(fn, *sharded[:2], sharded[2:], **kw)

  np.testing.assert_allclose(value_8, value_1, rtol=1e-5)
  for g8, g1 in zip(grads_8, grads_1):
    np.testing.assert_allclose(g8, g1, rtol=1e-5, atol=1e-7)
  # The global batch supplies the negatives: a per-shard loss would differ.
  local, _ = fn(z1[:2], z2[:2], *[e[:2] for e in extras], **kw)
  if name not in ('byol',):
    assert abs(float(local) - float(value_1)) > 1e-4


@pytest.mark.parametrize('name', sorted(CASES))
def test_sharded_equals_single_device(name):
  _check_sharded_equals_single(name)


@pytest.mark.parametrize('name', BLOCKWISE)
def test_sharded_blockwise_equals_single_device(name):
  _check_sharded_equals_single(name, block_size=5)
