"""Orbax checkpoints: bitwise round trip, mesh shardings, keep-N, fallback, save errors, kills."""

import asyncio
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

import jax
import jax.numpy as jnp
import numpy as np
from orbax.checkpoint._src.handlers import json_checkpoint_handler
import pytest

from glf_jax.run.checkpoint import Checkpointer, CheckpointError, read_meta
from tests.conftest import child_lines

# Orbax's reads of a corrupt checkpoint leave coroutines that complain once their event loop is
# closed ("Event loop is closed"): noise, not a failure of the code under test.
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TMP_SUFFIX = '.orbax-checkpoint-tmp'  # orbax's name for a save in progress: <step><suffix>


def _state(seed=0):
  """A small train-state-like pytree; the values depend on ``seed``, the structure does not."""
  rng = np.random.default_rng(seed)
  kernel = rng.standard_normal((16, 4)).astype(np.float32)
  kernel[0, :3] = [np.nan, -0.0, np.inf]  # bitwise equality must hold for these too
  return {'step': jnp.asarray(seed, jnp.int32),
          'params': {'kernel': jnp.asarray(kernel),
                     'bias': jnp.asarray(rng.standard_normal(4), jnp.float32)},
          'batch_stats': {'bn1': {'mean': jnp.asarray(rng.standard_normal(4), jnp.float32),
                                  'var': jnp.asarray(rng.random(4), jnp.float32)}},
          'opt': {'momentum': jnp.asarray(rng.standard_normal((16, 4)), jnp.float32),
                  'count': jnp.asarray(seed * 3, jnp.int32)},
          'rng': jax.random.key_data(jax.random.key(seed))}


def _assert_bitwise_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes()


def _step_dirs(directory):
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def _save_all(directory, steps, keep=3):
  with Checkpointer(str(directory), keep=keep, async_save=False) as ckpt:
    for step in steps:
      assert ckpt.save(step, _state(step), data_state={'next_index': step}, meta={'m': step})


def test_round_trip_is_bitwise_with_data_state_and_meta(tmp_path):
  state = {**_state(3), 'host': np.arange(5, dtype=np.float64)}  # a NumPy leaf too
  with Checkpointer(str(tmp_path), keep=2, async_save=False) as ckpt:
    assert ckpt.save(3, state, data_state={'next_index': 7, 'epoch': 1},
                     meta={'config': '{"a": 1}'})
    assert ckpt.latest_step() == 3 and ckpt.all_steps() == [3]
    step, restored, data, meta = ckpt.restore({**_state(0), 'host': np.zeros(5)})
  assert step == 3 and data == {'next_index': 7, 'epoch': 1}
  assert meta['config'] == '{"a": 1}' and meta['step'] == 3 and meta['wall_time'] > 0
  assert isinstance(restored['host'], np.ndarray)
  _assert_bitwise_equal(restored, state)


def test_async_save_copies_before_returning_then_restores(tmp_path):
  # The loop donates the state to the next step right after save(): the save must not need it.
  state = _state(4)
  with Checkpointer(str(tmp_path), async_save=True) as ckpt:
    assert ckpt.save(4, state, data_state={'next_index': 4})
    for leaf in jax.tree.leaves(state):
      leaf.delete()
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [4]
    assert ckpt.save(4, _state(5), data_state={}) is False  # already saved: nothing happens
    step, restored, data, _ = ckpt.restore(_state(0))
  assert step == 4 and data == {'next_index': 4}
  _assert_bitwise_equal(restored, _state(4))


def test_restore_lands_on_the_abstract_shardings(tmp_path):
  mesh = jax.make_mesh((8,), ('data',))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  # Saved with the kernel batch-sharded and the momentum replicated, restored the other way
  # round: the shardings restored come from the abstract state, not from the files.
  def shardings(kernel, momentum):
    tree = jax.tree.map(lambda _: replicated, _state(0))
    tree['params']['kernel'], tree['opt']['momentum'] = kernel, momentum
    return tree
  saved = jax.device_put(_state(1), shardings(batch, replicated))
  with Checkpointer(str(tmp_path), async_save=False) as ckpt:
    ckpt.save(1, saved, data_state={})
    wanted = shardings(replicated, batch)
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            _state(0), wanted)
    _, restored, _, _ = ckpt.restore(abstract)
    # Concrete arrays as the target: their shardings are used.
    _, from_concrete, _, _ = ckpt.restore(jax.device_put(_state(0), wanted))
  for out in (restored, from_concrete):
    for x, s in zip(jax.tree.leaves(out), jax.tree.leaves(wanted)):
      assert isinstance(x, jax.Array) and x.sharding.is_equivalent_to(s, x.ndim)
    _assert_bitwise_equal(out, _state(1))
  assert restored['opt']['momentum'].addressable_shards[0].data.shape == (2, 4)
  assert restored['params']['kernel'].addressable_shards[0].data.shape == (16, 4)


def test_keeps_the_latest_n(tmp_path):
  with Checkpointer(str(tmp_path), keep=2, async_save=False) as ckpt:
    for step in (1, 2, 3, 4):
      assert ckpt.save(step, _state(step), data_state={})
    assert ckpt.all_steps() == [3, 4] and ckpt.latest_step() == 4
  assert _step_dirs(tmp_path) == [3, 4]


def _corrupt(step_dir, how):
  if how == 'truncate':  # every file cut to nothing, as after a crash of the filesystem
    for root, _, files in os.walk(step_dir):
      for name in files:
        open(os.path.join(root, name), 'wb').close()
  elif how == 'lose_file':  # the root of the array store lost
    os.remove(os.path.join(step_dir, 'state', 'manifest.ocdbt'))
  elif how == 'lose_item':  # a partial copy: the data iterator's item is missing
    shutil.rmtree(os.path.join(step_dir, 'data'))
  elif how == 'empty':  # a directory with the step's name and nothing in it
    shutil.rmtree(step_dir)
    os.mkdir(step_dir)
  else:
    raise ValueError(how)


@pytest.mark.parametrize('how', ['truncate', 'lose_file', 'lose_item', 'empty'])
def test_unreadable_latest_falls_back_and_is_set_aside(tmp_path, caplog, how):
  _save_all(tmp_path, (1, 2, 3), keep=3)
  _corrupt(tmp_path / '3', how)
  with caplog.at_level(logging.WARNING):
    with Checkpointer(str(tmp_path), keep=3, async_save=False) as ckpt:
      step, state, data, meta = ckpt.restore(_state(0))
      assert (step, data, meta['m']) == (2, {'next_index': 2}, 2)
      _assert_bitwise_equal(state, _state(2))
      # The unreadable step no longer counts: the manager's latest is what was restored, and the
      # run can save its step number again (orbax would skip any step <= a stale latest).
      assert ckpt.latest_step() == 2 and ckpt.all_steps() == [1, 2]
      assert ckpt.save(3, _state(30), data_state={'next_index': 30})
      assert ckpt.save(4, _state(4), data_state={})
      assert ckpt.all_steps() == [2, 3, 4]
      assert ckpt.restore(_state(0))[0] == 4
      assert ckpt.restore(_state(0), step=3)[2] == {'next_index': 30}
  assert any('step 3' in r.getMessage() and 'cannot be read' in r.getMessage()
             for r in caplog.records if r.levelno == logging.WARNING)
  aside = [n for n in os.listdir(tmp_path) if n.startswith('corrupt-3-')]
  assert len(aside) == 1 and _step_dirs(tmp_path) == [2, 3, 4]


def test_falls_back_past_two_and_keep_one_keeps_the_good_one(tmp_path):
  _save_all(tmp_path, (1, 2, 3), keep=3)
  _corrupt(tmp_path / '3', 'truncate')
  _corrupt(tmp_path / '2', 'lose_file')
  with Checkpointer(str(tmp_path), keep=1, async_save=False) as ckpt:
    assert ckpt.restore(_state(0))[0] == 1
    assert ckpt.all_steps() == [1]
    assert ckpt.save(2, _state(2), data_state={})  # keep=1: step 1 goes only once 2 is committed
    assert ckpt.all_steps() == [2]
    _assert_bitwise_equal(ckpt.restore(_state(0))[1], _state(2))
  assert sorted(n.split('-')[1] for n in os.listdir(tmp_path) if n.startswith('corrupt-')) == [
      '2', '3']


def test_no_checkpoint_gives_none_and_all_unreadable_raises_moving_nothing(tmp_path):
  with Checkpointer(str(tmp_path / 'empty')) as ckpt:
    assert ckpt.restore(_state(0)) is None
    assert ckpt.latest_step() is None and ckpt.all_steps() == []
  bad = tmp_path / 'bad'
  _save_all(bad, (1, 2))
  _corrupt(bad / '1', 'truncate')
  _corrupt(bad / '2', 'lose_item')
  with Checkpointer(str(bad)) as ckpt:
    with pytest.raises(CheckpointError, match='none of the checkpoints in .*bad can be read'):
      ckpt.restore(_state(0))
  assert sorted(os.listdir(bad)) == ['1', '2']


def test_mismatched_structure_raises_and_renames_nothing(tmp_path):
  # Every step fails the same way: not corruption, so nothing may be set aside.
  _save_all(tmp_path, (1, 2))
  wrong = {**_state(0), 'extra': jnp.zeros(3)}
  with Checkpointer(str(tmp_path)) as ckpt:
    with pytest.raises(CheckpointError, match='structure'):
      ckpt.restore(wrong)
    with pytest.raises(CheckpointError, match='cannot read checkpoint step 2'):
      ckpt.restore(wrong, step=2)
    assert ckpt.all_steps() == [1, 2]
  assert sorted(os.listdir(tmp_path)) == ['1', '2']


def test_read_meta(tmp_path):
  assert read_meta(str(tmp_path / 'missing')) is None
  assert not (tmp_path / 'missing').exists()  # reading creates nothing
  os.mkdir(tmp_path / 'empty')
  assert read_meta(str(tmp_path / 'empty')) is None
  _save_all(tmp_path / 'run', (1, 2))
  assert read_meta(str(tmp_path / 'run'))['m'] == 2
  os.remove(tmp_path / 'run' / '2' / 'meta' / 'metadata')
  meta = read_meta(str(tmp_path / 'run'))
  assert meta['m'] == 1 and meta['step'] == 1
  assert _step_dirs(tmp_path / 'run') == [1, 2]  # read-only: nothing set aside
  _corrupt(tmp_path / 'run' / '1', 'truncate')
  with pytest.raises(CheckpointError, match='readable meta'):
    read_meta(str(tmp_path / 'run'))


def test_read_only_falls_back_without_touching_anything(tmp_path):
  _save_all(tmp_path, (1, 2))
  _corrupt(tmp_path / '2', 'lose_file')
  tmp = tmp_path / f'3{_TMP_SUFFIX}'  # another process's save in flight
  os.mkdir(tmp)
  with Checkpointer(str(tmp_path), read_only=True) as ckpt:
    assert ckpt.restore(_state(0))[0] == 1
    with pytest.raises(ValueError, match='read_only'):
      ckpt.save(5, _state(5), data_state={})
  assert sorted(os.listdir(tmp_path)) == ['1', '2', tmp.name]


def test_killed_save_leftover_is_ignored_then_cleaned(tmp_path):
  _save_all(tmp_path, (1, 2))
  # What a run killed while saving step 5 leaves (not step 3: saving a step replaces its own
  # leftover anyway, so this checks the clean-up of other steps' leftovers).
  leftover = tmp_path / f'5{_TMP_SUFFIX}'
  os.makedirs(leftover / 'state')
  (leftover / 'state' / '_METADATA').write_text('{"trunc')
  with Checkpointer(str(tmp_path), async_save=True) as ckpt:
    assert ckpt.all_steps() == [1, 2]
    step, state, data, _ = ckpt.restore(_state(0))
    assert (step, data) == (2, {'next_index': 2})
    _assert_bitwise_equal(state, _state(2))
    assert leftover.exists()  # only a writer's first save cleans up
    assert ckpt.save(3, _state(3), data_state={'next_index': 3})
    ckpt.wait_until_finished()
    assert ckpt.restore(_state(0))[0] == 3
  assert sorted(os.listdir(tmp_path)) == ['1', '2', '3']


def _disk_full(monkeypatch):
  """Makes the JSON items' writes fail as on a full disk (in orbax's write path, async too)."""
  async def fail(self, x, directory):
    del self, x, directory
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, '_save_fn', fail)


@pytest.mark.parametrize('async_save', [False, True])
def test_full_disk_is_a_clear_error_and_loses_nothing(tmp_path, monkeypatch, async_save):
  ckpt = Checkpointer(str(tmp_path), keep=1, async_save=async_save)
  assert ckpt.save(1, _state(1), data_state={'next_index': 1})
  ckpt.wait_until_finished()
  _disk_full(monkeypatch)
  with pytest.raises(CheckpointError) as info:
    ckpt.save(2, _state(2), data_state={'next_index': 2})
    ckpt.wait_until_finished()  # async: the background write's failure surfaces here
  message = str(info.value)
  assert info.value.errno == errno.ENOSPC
  assert str(tmp_path) in message and 'step 2' in message and 'disk is full' in message
  assert 'steps [1]) are intact' in message
  monkeypatch.undo()
  # keep=1, yet step 1 survives the failed save and the manager knows it is the latest.
  assert ckpt.latest_step() == 1 and _step_dirs(tmp_path) == [1]
  step, state, data, _ = ckpt.restore(_state(0))
  assert (step, data) == (1, {'next_index': 1})
  _assert_bitwise_equal(state, _state(1))
  # Space back: saving resumes, and keep=1 then removes step 1 (no checkpoint leaked).
  assert ckpt.save(2, _state(2), data_state={})
  ckpt.close()
  assert _step_dirs(tmp_path) == [2]


@pytest.mark.parametrize('async_save', [False, True])
def test_a_failed_save_returns_once_its_other_writes_have_stopped(tmp_path, monkeypatch,
                                                                  async_save):
  """Orbax reports a save's first failed write while its other items may still be writing into
  the temporary directory: the error comes once they have stopped (they would otherwise race the
  removal of that directory and the next save of the step, as seen on a busy machine)."""
  write = json_checkpoint_handler.JsonCheckpointHandler._save_fn
  data_failed, meta_written = threading.Event(), threading.Event()

  async def data_fails_while_meta_is_slow(self, x, directory):
    if directory.name.startswith('data'):
      data_failed.set()
      raise OSError(errno.ENOSPC, 'No space left on device')
    if directory.name.startswith('meta') and x['step'] == 2:
      await asyncio.to_thread(data_failed.wait)
      await asyncio.sleep(3)  # longer than anything a failed save waits for by the clock
      await write(self, x, directory)
      meta_written.set()
      return
    await write(self, x, directory)

  ckpt = Checkpointer(str(tmp_path), keep=1, async_save=async_save)
  assert ckpt.save(1, _state(1), data_state={})
  ckpt.wait_until_finished()
  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, '_save_fn',
                      data_fails_while_meta_is_slow)
  with pytest.raises(CheckpointError, match='step 2'):
    ckpt.save(2, _state(2), data_state={})
    ckpt.wait_until_finished()
  assert meta_written.is_set()  # the slow item had finished before the error was raised
  assert not (tmp_path / f'2{_TMP_SUFFIX}').exists()  # and its directory could be removed
  monkeypatch.undo()
  assert ckpt.save(2, _state(2), data_state={})
  ckpt.close()
  assert _step_dirs(tmp_path) == [2] and not [n for n in os.listdir(tmp_path) if _TMP_SUFFIX in n]


def test_rejects_bad_arguments(tmp_path):
  for keep in (0, -1, 1.5, True):
    with pytest.raises(ValueError, match='keep'):
      Checkpointer(str(tmp_path), keep=keep)
  with Checkpointer(str(tmp_path), async_save=False) as ckpt:
    with pytest.raises(TypeError, match='data_state'):
      ckpt.save(1, _state(1), data_state={'x': object()})
    assert ckpt.all_steps() == [] and _step_dirs(tmp_path) == []


_CHILD = textwrap.dedent("""
    import sys
    import jax.numpy as jnp
    from glf_jax.run.checkpoint import Checkpointer
    with Checkpointer(sys.argv[1], keep=2, async_save=True) as ckpt:
      for step in range(1, 100_000):
        state = {'w': jnp.full((1 << 21,), step, jnp.float32), 'step': jnp.asarray(step)}
        ckpt.save(step, state, data_state={'next_index': step})
        print(step, flush=True)
""")


def test_sigkill_while_saving_leaves_a_consistent_latest(tmp_path):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': _REPO}
  child = subprocess.Popen([sys.executable, '-c', _CHILD, str(tmp_path)], cwd=_REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  lines = child_lines(child)  # a child that hangs is killed (its output ends): no hang here
  try:
    started = 0
    while started < 3:  # save(3) started, so step 2 committed (save waits for the previous)
      line = next(lines, '')
      assert line, 'the child stopped before saving step 3'
      started = int(line)
    os.kill(child.pid, signal.SIGKILL)  # while step 3 (or a later one) is being written
  finally:
    lines.close()  # cancels the watchdog
    child.kill()
    child.wait()
  abstract = {'w': jax.ShapeDtypeStruct((1 << 21,), jnp.float32,
                                        sharding=jax.sharding.SingleDeviceSharding(
                                            jax.devices()[0])),
              'step': jax.ShapeDtypeStruct((), jnp.int32)}
  with Checkpointer(str(tmp_path), keep=2, async_save=False) as ckpt:
    step, state, data, _ = ckpt.restore(abstract)
    assert step >= 2 and data == {'next_index': step} and int(state['step']) == step
    assert bool(jnp.all(state['w'] == step))
    assert ckpt.save(step + 1, state, data_state={})  # and the run goes on
  assert not [n for n in os.listdir(tmp_path) if _TMP_SUFFIX in n]
