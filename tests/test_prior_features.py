"""Precomputed prior features (prior.kind='features'): the file, its check against the source,
the batch's example index, the on-device lookup (1 and 8 devices), the writing tool, and a run."""

import json
import sys
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from glf_jax import main, methods
from glf_jax import prior as prior_lib
from glf_jax.prior import features_file as prior_features
from glf_jax.prior import __main__ as tool
from glf_jax.runtime import devices
from glf_jax.data import make_loader, make_source, sources
from tests.conftest import run_child

ROOT = pathlib.Path(__file__).resolve().parent.parent


class _Source(sources.ImageSource):
  """A tiny in-memory source: example i is an image of constant value i."""

  def __init__(self, n=24, split='train', size=8):
    self.name, self.split, self._n = 'toy', split, n
    self.num_classes, self.class_names, self.image_shape = 3, ('a', 'b', 'c'), (size, size, 3)

  def __len__(self):
    return self._n

  def _read(self, index):
    return {'image': np.full(self.image_shape, index, np.uint8), 'label': np.int32(index % 3)}


def _table(n=24, d=5):
  return np.random.RandomState(0).randn(n, d).astype(np.float32)


@pytest.mark.parametrize('suffix', ['.safetensors', '.npy'])
def test_write_read_round_trip_records_the_source(tmp_path, suffix):
  source, table = _Source(), _table()
  path = str(tmp_path / f'prior{suffix}')
  prior_features.write(path, table, source=source, description='toy')
  features, metadata = prior_features.read(path)
  np.testing.assert_array_equal(features, table)
  assert metadata['num_examples'] == '24' and metadata['source'] == 'toy/train'
  assert metadata['ids_fingerprint'] == prior_features.ids_fingerprint(source.example_ids())
  np.testing.assert_array_equal(prior_features.load_for_source(path, source), table)
  # float16 rows stay float16 on disk.
  prior_features.write(path, table.astype(np.float16), source=source)
  assert prior_features.read(path)[0].dtype == np.float16


def _hand_written(path, table, source):
  """``table`` in the file format, bypassing write()'s checks (a file made by other tools)."""
  metadata = {'format': prior_features.FORMAT, **prior_features.source_metadata(source),
              'dim': str(table.shape[1] if table.ndim == 2 else 0)}
  if path.endswith('.safetensors'):
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    save_file({'features': table}, path, metadata=metadata)
  else:
    np.save(path, table, allow_pickle=table.dtype == object)
    pathlib.Path(path + '.json').write_text(json.dumps(metadata))


@pytest.mark.parametrize('suffix', ['.safetensors', '.npy'])
@pytest.mark.parametrize('table,message', [
    (np.full((24, 5), np.nan, np.float32), '24 of 24 rows of prior features hold NaN'),
    (np.zeros((24, 0), np.float32),
     r'features must be a float \[num_examples, D >= 1\] array, got float32 \(24, 0\)'),
])
def test_tables_of_nan_or_no_columns_are_refused_naming_the_file(tmp_path, suffix, table,
                                                                  message):
  path = str(tmp_path / f'prior{suffix}')
  _hand_written(path, table, _Source())
  with pytest.raises(ValueError, match=f'{path}: {message}'):
    prior_features.load_for_source(path, _Source())


def test_malformed_and_pickled_files_are_one_line_naming_the_file(tmp_path):
  broken = tmp_path / 'prior.safetensors'
  broken.write_bytes(b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":1}xx')
  with pytest.raises(ValueError, match=f'cannot read the prior features file {broken} as '
                     'safetensors') as info:
    prior_features.read(str(broken))
  assert '\n' not in str(info.value)
  pickled = str(tmp_path / 'prior.npy')
  _hand_written(pickled, np.array([{'x': 1}] * 24, dtype=object).reshape(24, 1), _Source())
  with pytest.raises(ValueError, match=f'cannot read the prior features file {pickled} '
                     r'\(ValueError: Object arrays cannot be loaded.*never pickle'):
    prior_features.read(pickled)


def test_a_file_for_other_examples_is_refused(tmp_path):
  path = str(tmp_path / 'prior.safetensors')
  prior_features.write(path, _table(), source=_Source())
  with pytest.raises(prior_features.PriorFeaturesMismatchError, match='24 examples.*has 30'):
    prior_features.load_for_source(path, _Source(n=30))
  with pytest.raises(prior_features.PriorFeaturesMismatchError, match='fingerprints differ'):
    prior_features.load_for_source(path, _Source(split='test'))
  with pytest.raises(ValueError, match='never pickle'):
    prior_features.read(str(tmp_path / 'prior.pkl'))
  with pytest.raises(FileNotFoundError, match='no prior features file'):
    prior_features.read(str(tmp_path / 'missing.npy'))
  np.save(tmp_path / 'bare.npy', _table())
  with pytest.raises(FileNotFoundError, match='no metadata file'):
    prior_features.read(str(tmp_path / 'bare.npy'))
  with pytest.raises(ValueError, match=r'shape \[len\(source\) = 24, D\]'):
    prior_features.write(path, _table(n=23), source=_Source())


def test_image_folder_ids_are_relative_paths_and_batches_carry_the_index(tmp_path):
  root = tmp_path / 'folder'
  for split in ('train',):
    for label, cls in enumerate(('cat', 'dog')):
      (root / split / cls).mkdir(parents=True)
      for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 10 * i + label, np.uint8)).save(
            root / split / cls / f'{i}.png')
  source = make_source({'name': 'image_folder', 'root': str(root), 'image_size': 8}, 'train')
  assert source.example_ids()[:2] == ['image_folder/train/cat/0.png',
                                      'image_folder/train/cat/1.png']
  digits = make_source({'name': 'digits'}, 'train')
  assert digits.example_ids()[3] == 'digits/train/3'
  # The loader's batches say which rows they hold: shuffled, and each row is that example.
  batch = next(iter(make_loader(source, seed=0, global_batch_size=4, process_index=0,
                                process_count=1)))
  assert batch['index'].dtype == np.int32 and sorted(batch['index']) != [0, 1, 2, 3]
  for image, index in zip(batch['image'], batch['index']):
    np.testing.assert_array_equal(image, source[int(index)]['image'])


def _features_prior(tmp_path, source, table):
  from glf_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config('simclr+adc', 'digits', 'resnet_tiny')
  path = str(tmp_path / 'prior.safetensors')
  prior_features.write(path, table, source=source)
  config.prior.kind, config.prior.path = 'features', path
  return prior_lib.build_prior(config, methods.build_objective(config.objective), source)


def test_lookup_gives_each_view_its_examples_row_on_one_and_eight_devices(tmp_path):
  source, table = _Source(n=32), _table(n=32)
  apply_fn, prior_state = _features_prior(tmp_path, source, table)
  index = np.array([5, 0, 31, 7, 7, 2, 9, 30], np.int32)
  batch = {'image': np.zeros((8, 8, 8, 3), np.uint8), 'index': index}
  views = jnp.zeros((16, 8, 8, 3))
  lookup = jax.jit(apply_fn)
  single = np.asarray(lookup(prior_state, views, batch))
  np.testing.assert_array_equal(single, np.concatenate([table[index], table[index]]))
  mesh = devices.make_mesh(8)
  sharded_batch = devices.to_global_batch(batch, mesh)
  sharded = lookup(jax.device_put(prior_state, devices.replicated(mesh)),
                   jax.device_put(views, devices.data_sharding(mesh)), sharded_batch)
  np.testing.assert_array_equal(np.asarray(sharded), single)
  with pytest.raises(ValueError, match="example 'index'"):
    apply_fn(prior_state, views, {'image': batch['image']})


@pytest.mark.slow
def test_tool_writes_a_runs_features_and_a_run_trains_with_them(tmp_path):
  sys.path.insert(0, str(ROOT))
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  encoder_run = tmp_path / 'encoder'
  config = quickstart.get_config()
  # 4 steps: the train step of test_train_loop's digits_config() (compiled once a session).
  config.train.num_steps, config.train.batch_size, config.train.eval_after = 4, 64, False
  main.run(config, str(encoder_run))

  out = tmp_path / 'prior.safetensors'
  # In process (the command line's exit codes are checked below): no second JAX start-up.
  assert tool.main(['--encoder', str(encoder_run), '--out', str(out)]) == 0
  env = {'PYTHONPATH': str(ROOT), 'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin'}
  features, metadata = prior_features.read(str(out))
  train_source = make_source(config.data, 'train')
  assert features.shape[0] == len(train_source) and np.all(np.isfinite(features))
  assert 'quickstart' in metadata['description'] or 'simclr' in metadata['description']

  bad = run_child(
      [sys.executable, '-m', 'glf_jax.prior', '--encoder', str(tmp_path / 'none'),
       '--out', str(tmp_path / 'x.safetensors')], cwd=tmp_path, env=env)
  assert bad.returncode == 2 and bad.stderr.strip().startswith('error: no glf_jax checkpoint')

  config = quickstart.get_config()
  config.train.num_steps, config.train.batch_size, config.train.eval_after = 3, 64, False
  config.prior.kind, config.prior.path = 'features', str(out)
  summary = main.run(config, str(tmp_path / 'with_features'))
  assert summary['step'] == 3 and summary['skipped_steps'] == 0
  last = summary['last_metrics']
  assert np.isfinite(last['adc/lpm']), last
  # A file made for another source (the test split) is refused before training.
  test_source = make_source(config.data, 'test')
  config.prior.path = str(tmp_path / 'test_split.safetensors')
  prior_features.write(config.prior.path, np.ones((len(test_source), 4)), source=test_source)
  with pytest.raises(prior_features.PriorFeaturesMismatchError, match='digits/test'):
    main.run(config, str(tmp_path / 'mismatch'))


@pytest.mark.optimized  # runs far longer than it compiles
@pytest.mark.slow
def test_tool_accepts_a_torchvision_file(tmp_path):
  from glf_jax.models import torchvision as tv  # pylint: disable=g-import-not-at-top
  from tests.test_torchvision import random_state_dict  # pylint: disable=g-import-not-at-top
  weights = str(tmp_path / 'r18.safetensors')
  tv.save_state_dict(random_state_dict('resnet18', 'cifar', fc=False), weights)
  out = tmp_path / 'prior.npy'
  env = {'PYTHONPATH': str(ROOT), 'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin'}
  command = [sys.executable, '-m', 'glf_jax.prior', '--encoder', weights,
             '--out', str(out), '--image-size', '8']
  missing = run_child(command, cwd=tmp_path, env=env)
  assert missing.returncode == 2 and 'set --data' in missing.stderr
  # In process (no second start-up); the test split: a quarter of the images to encode.
  assert tool.main([*command[3:], '--data', 'digits', '--split', 'test']) == 0
  source = make_source({'name': 'digits'}, 'test')
  features = prior_features.load_for_source(str(out), source)
  assert features.shape == (len(source), 512) and np.all(np.isfinite(features))
