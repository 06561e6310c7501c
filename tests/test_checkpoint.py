"""Orbax checkpoints: round trip onto a mesh, keep-N, fallback past corrupt ones, save errors."""

import errno
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glf_jax import parallel
from glf_jax.train.checkpoint import Checkpointer, CheckpointError, read_meta


def _state(seed=0):
  rng = np.random.default_rng(seed)
  return {'step': jnp.asarray(seed, jnp.int32),
          'params': {'kernel': jnp.asarray(rng.standard_normal((8, 4)), jnp.float32),
                     'bias': jnp.asarray(rng.standard_normal(4), jnp.float32)},
          'batch_stats': {'mean': jnp.asarray(rng.standard_normal(4), jnp.float32)},
          'rng': jax.random.key_data(jax.random.key(seed))}


def _assert_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_with_data_state_and_meta(tmp_path):
  with Checkpointer(str(tmp_path), keep=2, async_save=True) as ckpt:
    ckpt.save(3, _state(3), data_state={'next_index': 7}, meta={'config': '{}'})
    ckpt.wait_until_finished()
    step, state, data, meta = ckpt.restore(_state(0))
  assert step == 3 and data == {'next_index': 7} and meta['config'] == '{}'
  _assert_equal(state, _state(3))
  assert read_meta(str(tmp_path))['step'] == 3


def test_restore_lands_on_the_mesh_shardings(tmp_path):
  mesh = parallel.make_mesh(8)
  state = jax.device_put(_state(1), parallel.replicated(mesh))
  with Checkpointer(str(tmp_path), async_save=False) as ckpt:
    ckpt.save(1, state, data_state={})
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        x.shape, x.dtype, sharding=parallel.replicated(mesh)), _state(0))
    _, restored, _, _ = ckpt.restore(abstract)
  assert all(len(x.sharding.device_set) == 8 for x in jax.tree.leaves(restored))
  _assert_equal(restored, _state(1))


def test_keeps_the_latest_n(tmp_path):
  with Checkpointer(str(tmp_path), keep=2, async_save=False) as ckpt:
    for step in (1, 2, 3, 4):
      ckpt.save(step, _state(step), data_state={})
    assert ckpt.all_steps() == [3, 4]
    assert ckpt.save(4, _state(4), data_state={}) is False  # already saved: no-op


def _corrupt(step_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs]
  assert files
  for path in files:
    with open(path, 'wb') as f:
      f.write(b'garbage')


def test_corrupt_latest_falls_back_to_the_previous(tmp_path, caplog):
  with Checkpointer(str(tmp_path), keep=3, async_save=False) as ckpt:
    ckpt.save(1, _state(1), data_state={'i': 1})
    ckpt.save(2, _state(2), data_state={'i': 2})
  _corrupt(tmp_path / '2')
  with Checkpointer(str(tmp_path), keep=3, async_save=False) as ckpt:
    step, state, data, _ = ckpt.restore(_state(0))
    assert step == 1 and data == {'i': 1}
    _assert_equal(state, _state(1))
    assert ckpt.latest_step() == 1  # the unreadable one was moved aside
    ckpt.save(2, _state(5), data_state={'i': 5})  # the run continues and saves step 2 again
    assert ckpt.all_steps() == [1, 2]
  assert any(name.startswith('corrupt-2-') for name in os.listdir(tmp_path))


def test_no_checkpoint_and_all_corrupt(tmp_path):
  with Checkpointer(str(tmp_path / 'empty')) as ckpt:
    assert ckpt.restore(_state(0)) is None
  with Checkpointer(str(tmp_path / 'bad'), async_save=False) as ckpt:
    ckpt.save(1, _state(1), data_state={})
  _corrupt(tmp_path / 'bad' / '1')
  with Checkpointer(str(tmp_path / 'bad')) as ckpt:
    with pytest.raises(CheckpointError, match='no readable checkpoint'):
      ckpt.restore(_state(0))


def test_save_failure_names_the_directory_and_keeps_earlier_checkpoints(tmp_path, monkeypatch):
  ckpt = Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(1, _state(1), data_state={})

  def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(ckpt._manager, 'save', disk_full)  # pylint: disable=protected-access
  with pytest.raises(CheckpointError, match=r'disk is full.*\[1\] are intact') as info:
    ckpt.save(2, _state(2), data_state={})
  assert str(tmp_path) in str(info.value)
  monkeypatch.undo()
  step, state, _, _ = ckpt.restore(_state(0))
  assert step == 1
  ckpt.close()


def test_keep_must_be_positive(tmp_path):
  with pytest.raises(ValueError, match='checkpoint.keep'):
    Checkpointer(str(tmp_path), keep=0)
