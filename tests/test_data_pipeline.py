"""Tests of the grain loader (order, shards, checkpointable position) and of glf_jax.parallel."""

import itertools
import json
import pickle

import grain
import jax
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from glf_jax.runtime import devices
from glf_jax.data import pipeline


class IdSource:
  """A tiny random-access source whose label is the example's index: order is visible."""

  def __init__(self, n):
    self._n = n

  def __len__(self):
    return self._n

  def __getitem__(self, i):
    return {'image': np.full((2, 2, 3), i % 256, np.uint8), 'label': np.int32(i)}


def _labels(loader_or_iterator, steps):
  it = iter(loader_or_iterator)
  return [next(it)['label'].tolist() for _ in range(steps)]


def _loader(n=103, **kwargs):
  kwargs = {'seed': 0, 'global_batch_size': 8, 'process_index': 0, 'process_count': 1} | kwargs
  return pipeline.make_loader(IdSource(n), **kwargs)


def test_batches_and_epochs():
  loader = _loader()
  assert loader.steps_per_epoch == 12 and loader.per_process_batch_size == 8
  batch = next(iter(loader))
  assert batch['image'].shape == (8, 2, 2, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (8,) and batch['label'].dtype == np.int32
  epochs = np.array(_labels(loader, 36)).reshape(3, 12 * 8)
  for epoch in epochs:  # each epoch: 96 distinct examples, the remainder of 103 dropped
    assert len(set(epoch.tolist())) == 96 and epoch.max() < 103
  # Epochs are reshuffled: different orders and different dropped examples.
  assert not np.array_equal(epochs[0], epochs[1])
  assert set(epochs[0].tolist()) != set(epochs[1].tolist())


def test_same_seed_same_order_different_seed_differs():
  assert _labels(_loader(seed=3), 20) == _labels(_loader(seed=3), 20)
  assert _labels(_loader(seed=3), 20) != _labels(_loader(seed=4), 20)
  # Seeds are mixed, so seed 1 is not seed 0 shifted by one epoch.
  assert _labels(_loader(seed=0), 24)[12:] != _labels(_loader(seed=1), 12)


def test_unshuffled_finite_and_partial_batches():
  assert _labels(_loader(n=20, shuffle=False, global_batch_size=5), 4)[1] == [5, 6, 7, 8, 9]
  finite = _loader(n=20, num_epochs=2, global_batch_size=6)
  assert len(list(iter(finite))) == 2 * 3
  partial = _loader(n=20, shuffle=False, num_epochs=1, global_batch_size=6,
                    drop_remainder=False)
  assert [len(b) for b in _labels(partial, 4)] == [6, 6, 6, 2]


def test_process_shards_are_disjoint_and_form_the_global_batch():
  single = _labels(_loader(global_batch_size=16), 12)  # 6 steps per epoch: two epochs
  shards = [_labels(_loader(global_batch_size=16, process_index=p, process_count=4), 12)
            for p in range(4)]
  assert all(len(batch) == 4 for shard in shards for batch in shard)
  for step in range(12):
    # Concatenated in process order, the shards are the single-process global batch.
    assert list(itertools.chain(*(shard[step] for shard in shards))) == single[step]
  for epoch in range(2):
    rows = [label for shard in shards for batch in shard[6 * epoch:6 * epoch + 6]
            for label in batch]
    assert len(rows) == len(set(rows)) == 96  # disjoint, covering all but the remainder


def test_epoch_order_is_grains_index_shuffle():
  sizes = [(1, 0), (2, 5), (3, 7), (17, 2), (1347, 12345), (65535, 4), (65536, 3),
           (65537, 9),  # max_index 2**16: grain wraps the last index to the first's position
           (131073, 2**32 - 1)]
  for n, seed in sizes:
    expected = [grain.experimental.index_shuffle(i, max_index=n - 1, seed=seed, rounds=4)
                for i in range(n)]
    np.testing.assert_array_equal(pipeline.epoch_order(n, seed), expected, err_msg=f'{n} {seed}')


def test_epoch_order_without_a_table_for_large_blocks(monkeypatch):
  monkeypatch.setattr(pipeline, '_TABLE_BITS', 16)  # 70,000 needs 18 bits: the cipher per index
  expected = [grain.experimental.index_shuffle(i, max_index=69999, seed=3, rounds=4)
              for i in range(70000)]
  np.testing.assert_array_equal(pipeline.epoch_order(70000, 3), expected)


def _grain_batches(source, *, seed, global_batch_size, process_index=0, process_count=1,
                   shuffle=True, drop_remainder=True):
  """The loader as grain's own shuffle -> batch -> this process's slice -> repeat (one read per
  example): what make_loader must equal, batch for batch."""
  n, per_process = len(source), global_batch_size // process_count
  dataset = grain.MapDataset.source(source)
  if shuffle:
    dataset = dataset.shuffle(seed=pipeline.grain_seed(seed))
  if drop_remainder:
    steps = n // global_batch_size
    dataset = dataset.batch(per_process, drop_remainder=True)
    dataset = dataset[process_index:steps * process_count:process_count]
  else:
    dataset = dataset.batch(global_batch_size, drop_remainder=False)
  return iter(dataset.repeat(None).to_iter_dataset())


def _assert_same_batches(expected_iterator, loader, steps):
  got = iter(loader)
  for step in range(steps):
    expected, batch = next(expected_iterator), next(got)
    assert expected.keys() == batch.keys(), step
    for key in expected:
      assert expected[key].dtype == batch[key].dtype, (step, key)
      np.testing.assert_array_equal(expected[key], batch[key], err_msg=f'step {step} {key}')


@pytest.mark.parametrize('n,batch,processes,shuffle,drop', [
    (103, 8, 1, True, True), (103, 16, 4, True, True), (103, 96, 2, True, True),
    (103, 8, 1, False, True), (20, 6, 1, True, False), (20, 6, 1, False, False),
    (65537 + 3, 96, 2, True, True)])
def test_batches_are_grains_shuffle_then_batch(n, batch, processes, shuffle, drop):
  for p in range(processes):
    kwargs = dict(seed=7, global_batch_size=batch, process_index=p, process_count=processes,
                  shuffle=shuffle, drop_remainder=drop)
    steps = min(3 * max(n // batch, 1) + 2, 30)  # three epochs and more (or 30 steps)
    _assert_same_batches(_grain_batches(IdSource(n), **kwargs),
                         pipeline.make_loader(IdSource(n), **kwargs), steps)


def test_sources_read_whole_batches_as_their_examples_stacked():
  from glf_jax.data import sources, subsets  # pylint: disable=g-import-not-at-top
  digits = sources.DigitsSource('test')
  subset = subsets.SubsetSource(digits, np.arange(3, 400, 2), np.arange(199) % 10,
                                [str(c) for c in range(10)])
  for source in (digits, subset):
    assert source._read_rows(np.arange(2)) is not None  # read in one go, not per example
    kwargs = dict(seed=2, global_batch_size=32, process_index=0, process_count=1)
    _assert_same_batches(_grain_batches(source, **kwargs), pipeline.make_loader(source, **kwargs),
                         30)
  # A step's reader pickles without its orders and lock (grain's worker processes).
  reader = pipeline._StepReader(digits, num_examples=len(digits), global_batch_size=8,
                                per_process=8, steps_per_epoch=len(digits) // 8,
                                process_index=0, shuffle_seed=5)
  first = reader(60, None)
  again = pickle.loads(pickle.dumps(reader))
  for key in first:
    np.testing.assert_array_equal(again(60, None)[key], first[key])


def test_state_save_and_restore_gives_the_same_batches():
  loader = _loader()
  it = iter(loader)
  for _ in range(7):
    next(it)
  state = json.dumps(it.get_state())  # small and JSON-serialisable
  assert len(state) < 200
  expected = _labels(it, 10)  # crosses the epoch boundary at step 12
  resumed = iter(_loader())
  resumed.set_state(json.loads(state))
  assert _labels(resumed, 10) == expected
  assert _labels(_loader(), 17)[7:] == expected


def test_argument_errors():
  with pytest.raises(ValueError, match='multiple of the process count 4'):
    _loader(global_batch_size=10, process_count=4)
  with pytest.raises(ValueError, match='fewer than one global batch'):
    _loader(n=5)
  with pytest.raises(ValueError, match='single process'):
    _loader(global_batch_size=8, process_count=2, drop_remainder=False)
  with pytest.raises(ValueError, match='process_index'):
    _loader(process_index=2, process_count=2)


def test_default_process_from_jax():
  loader = pipeline.make_loader(IdSource(40), seed=0, global_batch_size=8)
  assert (loader.process_index, loader.process_count) == (0, 1)


# ---------------------------------------------------------------------------------------------
# parallel


def test_mesh_and_shardings():
  mesh = devices.make_mesh()
  assert mesh.axis_names == ('data',) and mesh.devices.shape == (8,)
  assert devices.data_sharding(mesh).spec == P('data')
  assert devices.replicated(mesh).spec == P()
  assert devices.make_mesh(4, axis_name='batch').devices.shape == (4,)
  with pytest.raises(ValueError, match=r'\[1, 8\]'):
    devices.make_mesh(9)
  assert devices.initialize_distributed() is False
  assert devices.initialize_distributed(num_processes=1) is False


def test_to_global_batch_shards_over_data():
  mesh = devices.make_mesh()
  local = next(iter(_loader(global_batch_size=16)))
  batch = devices.to_global_batch(local, mesh)
  for name in ('image', 'label'):
    array = batch[name]
    assert isinstance(array, jax.Array) and array.shape == local[name].shape
    assert array.sharding.spec == P('data') and len(array.sharding.device_set) == 8
    assert {s.data.shape[0] for s in array.addressable_shards} == {2}
    np.testing.assert_array_equal(np.asarray(array), local[name])
  # Under jit the sharding carries through.
  total = jax.jit(lambda b: b['label'].sum())(batch)
  assert int(total) == int(local['label'].sum())
  with pytest.raises(ValueError, match='divide evenly over 8'):
    devices.to_global_batch({'label': np.arange(12)}, mesh)


@pytest.mark.slow
def test_worker_processes_keep_order_and_state():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from glf_jax.data import sources  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # grain's workers read absl flags (absl.app parses them)
  source = sources.DigitsSource('test')
  kwargs = {'seed': 5, 'global_batch_size': 32, 'process_index': 0, 'process_count': 1}
  expected = _labels(pipeline.make_loader(source, **kwargs), 8)
  loader = pipeline.make_loader(source, worker_count=2, **kwargs)
  it = resumed = None
  try:
    it = iter(loader)
    assert _labels(it, 3) == expected[:3]
    state = json.loads(json.dumps(it.get_state()))
    resumed = iter(loader)
    resumed.set_state(state)
    assert _labels(resumed, 5) == expected[3:]
  finally:  # the worker processes end with the test, not whenever the iterators are collected
    for iterator in (it, resumed):
      if iterator is not None:
        iterator.close()


class _LabelledSource(IdSource):
  """``IdSource`` with classes: example ``i`` is of class ``labels[i]``."""

  def __init__(self, labels):
    super().__init__(len(labels))
    self._classes = np.asarray(labels, np.int32)

  def __getitem__(self, i):
    return {**super().__getitem__(i), 'label': self._classes[i], 'index': np.int32(i)}

  def labels(self):
    return self._classes


def test_stratified_batches_hold_every_class_while_the_classes_last():
  balanced = _LabelledSource(np.repeat(np.arange(10), 30))  # 300 examples, 10 classes
  loader = pipeline.make_loader(balanced, seed=4, global_batch_size=20, sampler='stratified',
                                process_index=0, process_count=1)
  iterator = iter(loader)
  epochs = []
  for _ in range(2):
    batches = [next(iterator) for _ in range(loader.steps_per_epoch)]
    for batch in batches:  # 20 rows, 10 classes: two of each
      assert sorted(np.bincount(batch['label'], minlength=10)) == [2] * 10
    epochs.append(np.concatenate([b['index'] for b in batches]))
    assert sorted(epochs[-1]) == list(range(300))  # an epoch visits every example once
  assert not np.array_equal(epochs[0], epochs[1])  # and each epoch deals anew
  again = iter(pipeline.make_loader(balanced, seed=4, global_batch_size=20, sampler='stratified',
                                    process_index=0, process_count=1))
  assert np.array_equal(np.concatenate([next(again)['index'] for _ in range(15)]), epochs[0])
  # Resume from a saved position: the same batches follow.
  state = again.get_state()
  following = [next(again)['index'] for _ in range(3)]
  resumed = iter(loader)
  resumed.set_state(state)
  assert all(np.array_equal(next(resumed)['index'], f) for f in following)
  # Long-tailed classes: every batch holds every class until the rarest classes run out.
  tail = _LabelledSource(np.repeat(np.arange(4), [40, 20, 10, 10]))
  first = next(iter(pipeline.make_loader(tail, seed=0, global_batch_size=8, sampler='stratified',
                                         process_index=0, process_count=1)))
  assert set(first['label']) == {0, 1, 2, 3}
  with pytest.raises(ValueError, match='train.sampler must be one of'):
    pipeline.make_loader(balanced, seed=0, global_batch_size=20, sampler='balanced',
                         process_index=0, process_count=1)
