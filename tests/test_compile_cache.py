"""glf_jax.runtime.compile_cache: the persistent compilation cache's setting reaches JAX."""

import os
import sys

import jax
import pytest

from glf_jax.config import base_config
from glf_jax.runtime import compile_cache
from tests.conftest import run_child
from tests.test_train_loop import ROOT, _env


@pytest.fixture
def jax_cache_settings():
  """Restores conftest's cache settings after a test changes them."""
  saved = (jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache)
  yield
  jax.config.update('jax_compilation_cache_dir', saved[0])
  jax.config.update('jax_enable_compilation_cache', saved[1])


def test_default_dir_is_per_user_and_follows_xdg(monkeypatch):
  monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
  assert compile_cache.default_dir() == os.path.join('~/.cache', 'glf_jax', 'xla')
  monkeypatch.setenv('XDG_CACHE_HOME', '/scratch/me/cache')
  assert compile_cache.default_dir() == '/scratch/me/cache/glf_jax/xla'
  assert base_config('simclr', 'digits', 'resnet_tiny').compilation_cache_dir == (
      '/scratch/me/cache/glf_jax/xla')


def test_configure_sets_jax_and_turns_off(tmp_path, monkeypatch, jax_cache_settings):
  monkeypatch.delenv(compile_cache.ENVIRONMENT, raising=False)
  monkeypatch.setenv('HOME', str(tmp_path))
  monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
  used = compile_cache.configure(compile_cache.default_dir())
  assert used == str(tmp_path / '.cache' / 'glf_jax' / 'xla')
  assert jax.config.jax_compilation_cache_dir == used and jax.config.jax_enable_compilation_cache
  assert compile_cache.configure('gs://bucket/xla') == 'gs://bucket/xla'  # URLs kept as they are
  for off in (None, '', 'none', 'None'):
    jax.config.update('jax_enable_compilation_cache', True)
    assert compile_cache.configure(off) is None
    assert not jax.config.jax_enable_compilation_cache, off


def test_environment_replaces_the_default_not_a_given_dir(tmp_path, monkeypatch,
                                                          jax_cache_settings):
  monkeypatch.setenv(compile_cache.ENVIRONMENT, str(tmp_path / 'from_env'))
  assert compile_cache.configure(compile_cache.default_dir()) == str(tmp_path / 'from_env')
  assert compile_cache.configure(str(tmp_path / 'mine')) == str(tmp_path / 'mine')
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'mine')


@pytest.mark.slow
def test_a_run_writes_its_programs_to_the_configured_cache(tmp_path):
  env = _env()
  env['JAX_COMPILATION_CACHE_DIR'] = str(tmp_path / 'from_env')
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'  # every program, however quick
  # The smallest run that compiles a training step (no ADC prior, no evaluation).
  overrides = {'objective.name': 'simclr', 'model.width_multiplier': 1, 'train.num_steps': 1,
               'train.batch_size': 32, 'train.eval_after': False,
               'compilation_cache_dir': tmp_path / 'given'}
  result = run_child(
      [sys.executable, '-m', 'glf_jax.main', '--config', 'configs/quickstart.py',
       *[f'--config.{k}={v}' for k, v in overrides.items()], '--workdir', str(tmp_path / 'run')],
      cwd=ROOT, env=env)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert not (tmp_path / 'from_env').exists()  # the config's setting, not the environment's
  entries = os.listdir(tmp_path / 'given')
  assert any(name.startswith('jit_train_step-') for name in entries), entries
