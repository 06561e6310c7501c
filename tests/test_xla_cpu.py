"""glf_jax.xla_cpu: presets reach XLA_FLAGS before JAX starts, never after, and keep fp32 results."""

import json
import os
import sys
import textwrap

import pytest

from glf_jax.runtime import xla_cpu
from tests.conftest import run_child

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, **env):
  """Runs ``code`` in a fresh interpreter (JAX not yet initialised); returns its last JSON line."""
  environ = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
  environ.update(env)
  environ['PYTHONPATH'] = _REPO
  out = run_child([sys.executable, '-c', textwrap.dedent(code)], env=environ)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


_CONV_GRAD = """
  import json, os
  from glf_jax.runtime import xla_cpu
  added = xla_cpu.configure('{preset}')
  import jax, jax.numpy as jnp, numpy as np
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  w = jax.random.normal(jax.random.key(1), (3, 3, 3, 16)) * 0.2
  def loss(w):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    y = (y - y.mean((0, 1, 2))) / jnp.sqrt(y.var((0, 1, 2)) + 1e-5)  # BatchNorm statistics
    return jnp.sum(jax.nn.relu(y) ** 2)
  value, grad = jax.jit(jax.value_and_grad(loss))(w)
  print(json.dumps(dict(added=added, xla_flags=os.environ.get('XLA_FLAGS', ''),
                        value=float(value), grad=np.asarray(grad).ravel().tolist())))
"""


def test_unknown_preset_is_rejected():
  with pytest.raises(ValueError, match='flags_preset must be one of'):
    xla_cpu.configure('fastest')


def test_after_jax_started_it_warns_and_changes_nothing(monkeypatch):
  import jax
  jax.devices()  # the test process's backends are initialised by now anyway
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  with pytest.warns(UserWarning, match='no longer read'):
    assert xla_cpu.configure('fast') == []
  assert 'XLA_FLAGS' not in os.environ


def test_fast_preset_sets_the_flag_and_keeps_fp32_numerics():
  fast = _run(_CONV_GRAD.format(preset='fast'), JAX_PLATFORMS='cpu')
  plain = _run(_CONV_GRAD.format(preset='none'), JAX_PLATFORMS='cpu')
  assert fast['added'] == list(xla_cpu.PRESETS['fast'])
  assert fast['xla_flags'].split() == list(xla_cpu.PRESETS['fast'])
  assert plain['added'] == [] and plain['xla_flags'] == ''
  assert fast['value'] == pytest.approx(plain['value'], rel=1e-5)
  assert fast['grad'] == pytest.approx(plain['grad'], rel=1e-4, abs=1e-4)


def test_user_flags_win_and_accelerators_are_left_alone():
  user = '--xla_cpu_experimental_ynn_fusion_type=eltwise'
  kept = _run("""
    import json, os
    from glf_jax.runtime import xla_cpu
    print(json.dumps(dict(added=xla_cpu.configure('fast'), flags=os.environ['XLA_FLAGS'])))
  """, JAX_PLATFORMS='cpu', XLA_FLAGS=user)
  assert kept == {'added': [], 'flags': user}
  # Named accelerator platform: nothing is added (JAX is not initialised, so no GPU is needed).
  gpu = _run("""
    import json, os
    from glf_jax.runtime import xla_cpu
    print(json.dumps(dict(added=xla_cpu.configure('fast'), flags=os.environ.get('XLA_FLAGS'))))
  """, JAX_PLATFORMS='cuda,cpu')
  assert gpu == {'added': [], 'flags': None}


_WMSE_GRAD = """
  import json
  from glf_jax.runtime import xla_cpu
  xla_cpu.configure('{preset}')
  import jax, numpy as np
  from glf_jax.losses import wmse
  z1 = jax.random.normal(jax.random.key(0), (256, 64))
  z2 = z1 + 0.3 * jax.random.normal(jax.random.key(1), (256, 64))
  f = jax.jit(jax.value_and_grad(lambda a, b: wmse(a, b, jax.random.key(2), w_size=128)[0],
                                 argnums=(0, 1)))
  value, (g1, g2) = f(z1, z2)
  print(json.dumps(dict(value=float(value), grad=np.asarray(g1).ravel()[::37].tolist())))
"""


def test_wmse_runs_under_the_fast_preset():
  # LAPACK's column-major Cholesky / triangular solves next to YNN element-wise fusions used to
  # fail to compile ("unsupported layout in YNN fusion"); whitening pins them to row-major.
  fast = _run(_WMSE_GRAD.format(preset='fast'), JAX_PLATFORMS='cpu')
  plain = _run(_WMSE_GRAD.format(preset='none'), JAX_PLATFORMS='cpu')
  assert fast['value'] == pytest.approx(plain['value'], rel=1e-5)
  assert fast['grad'] == pytest.approx(plain['grad'], rel=1e-3, abs=1e-7)


_DOT_WITH_A_CONSTANT = """
  import json
  from glf_jax.runtime import xla_cpu
  xla_cpu.configure('{preset}')
  import jax, jax.numpy as jnp, numpy as np
  x = jax.random.normal(jax.random.key(0), (64, 16, 16, 32))
  w = jax.random.normal(jax.random.key(1), (3, 3, 32, 64)) * 0.1
  def pooled_times_constant(x, w):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y.mean(axis=(1, 2)) @ jnp.full((64, 10), 0.5)
  jitted = np.asarray(jax.jit(pooled_times_constant)(x, w))
  with jax.disable_jit():
    eager = np.asarray(pooled_times_constant(x, w))
  print(json.dumps(dict(jaxlib=jax.lib.__version__,
                        error=float(np.max(np.abs(jitted - eager))),
                        scale=float(np.max(np.abs(eager))))))
"""


@pytest.mark.parametrize('preset', ['none', 'fast'])
def test_a_pooled_conv_times_a_constant_matrix_is_compiled_correctly(preset):
  # jaxlib 0.10.2's CPU compiler returns garbage (1e22 where the answer is about 1) for a conv,
  # a spatial mean, then a dot with a constant matrix (jnp.ones / jnp.full) — 0.10.1 is correct,
  # and requirements.txt excludes 0.10.2 (its wrong-result regression: jax-ml/jax#39103). This
  # fails on a jaxlib with that bug, whatever installed it.
  result = _run(_DOT_WITH_A_CONSTANT.format(preset=preset), JAX_PLATFORMS='cpu')
  assert result['error'] <= 1e-5 * result['scale'], result
