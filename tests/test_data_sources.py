"""Tests of the random-access sources: digits, image folders + cache, TFDS (local ArrayRecord)."""

import io
import itertools
import json
import os
import shutil

import numpy as np
from PIL import Image
import pytest

from glf_jax.data import decode_cache
from glf_jax.data import sources
from glf_jax.data import tfds_source

CIFAR10_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
                 'truck')


# ---------------------------------------------------------------------------------------------
# digits


def test_digits_splits_shapes_and_labels():
  config = sources.default_data_config('digits')
  assert config.image_size == 16  # the table's stored size: upscaled from 8x8
  config.image_size = 0           # keep 8x8
  train = sources.make_source(config, 'train')
  test = sources.make_source(config, 'test')
  assert (len(train), len(test)) == (1347, 450)
  example = train[0]
  assert example['image'].shape == (8, 8, 3) and example['image'].dtype == np.uint8
  assert example['label'].dtype == np.int32
  assert train.image_shape == (8, 8, 3) and train.num_classes == 10
  images = np.stack([train[i]['image'] for i in range(len(train))])
  assert images.max() == 255 and images.min() == 0
  np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey repeated to RGB
  # Stratified: every class in both splits, in about the same proportion.
  test_counts = np.bincount([int(test[i]['label']) for i in range(len(test))], minlength=10)
  assert test_counts.min() >= 43 and test_counts.max() <= 47
  # Deterministic split.
  again = sources.DigitsSource('test')
  np.testing.assert_array_equal(again[17]['image'], test[17]['image'])
  assert test[-1]['label'] == test[len(test) - 1]['label']
  with pytest.raises(IndexError):
    test[len(test)]


def test_digits_resize_and_bad_split():
  config = sources.default_data_config('digits')
  config.image_size = 16
  assert sources.make_source(config, 'train')[3]['image'].shape == (16, 16, 3)
  with pytest.raises(ValueError, match=r"unknown split 'validation'.*\['test', 'train'\]"):
    sources.make_source(config, 'validation')


def test_config_errors_name_the_allowed_values():
  with pytest.raises(ValueError, match='cifar10.*digits'):
    sources.default_data_config('mnist')
  config = sources.default_data_config('digits')
  config.name = 'mnist'
  with pytest.raises(ValueError, match="unknown data source 'mnist'.*image_folder"):
    sources.make_source(config, 'train')
  with pytest.raises(ValueError, match='data.root'):
    sources.make_source(sources.default_data_config('image_folder'), 'train')
  assert sources.default_data_config('imagenet100').image_size == 224


def test_sources_keeps_its_names():
  for name in ('make_source', 'default_data_config', 'SOURCE_NAMES', 'ImageFolderSource',
               'DigitsSource', 'TfdsSource', 'CorruptImageError', 'DatasetNotPreparedError',
               'IMAGENET100_SYNSETS', 'resize_and_center_crop', 'resolve_tfds_data_dir',
               'prepare_command', 'ImageSource', 'IMAGE_EXTENSIONS'):
    assert hasattr(sources, name), name
  assert issubclass(sources.CorruptImageError, ValueError)
  assert issubclass(sources.DatasetNotPreparedError, ValueError)


# ---------------------------------------------------------------------------------------------
# image folders


def _pixels(seed, size=(12, 12)):
  return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _write(path, pixels, fmt=None):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path, format=fmt)


def _make_folder(root, counts, size=(12, 12)):
  """Writes counts[split][class] PNG images (lossless, so pixels can be compared)."""
  pixels = {}
  seed = 0
  for split, per_class in counts.items():
    for class_name, n in per_class.items():
      for i in range(n):
        seed += 1
        path = root / split / class_name / f'{i:03d}.png'
        pixels[(split, class_name, i)] = _pixels(seed, size)
        _write(path, pixels[(split, class_name, i)])
  return pixels


@pytest.fixture
def folder(tmp_path):
  root = tmp_path / 'images'
  pixels = _make_folder(root, {'train': {'cat': 3, 'dog': 4, 'emu': 2},
                               'test': {'cat': 2, 'dog': 1}})
  return root, pixels


def test_image_folder_reads_pixels_and_labels(folder, tmp_path):
  root, pixels = folder
  config = sources.default_data_config('image_folder')
  config.root = os.fspath(root)
  config.cache_dir = os.fspath(tmp_path / 'cache')
  train = sources.make_source(config, 'train')
  assert len(train) == 9 and train.class_names == ('cat', 'dog', 'emu')
  assert train.image_shape == (12, 12, 3) and train.num_classes == 3
  assert train.cache_built and train.cache_path.parent == tmp_path / 'cache'
  # Files are sorted by class, then name; labels follow the class order.
  np.testing.assert_array_equal(train[0]['image'], pixels[('train', 'cat', 0)])
  np.testing.assert_array_equal(train[4]['image'], pixels[('train', 'dog', 1)])
  assert [int(train[i]['label']) for i in range(9)] == [0, 0, 0, 1, 1, 1, 1, 2, 2]
  assert train[0]['label'].dtype == np.int32 and train[0]['image'].dtype == np.uint8
  # The test split lacks 'emu' but keeps the union's labels.
  test = sources.make_source(config, 'test')
  assert test.class_names == ('cat', 'dog', 'emu')
  assert [int(test[i]['label']) for i in range(3)] == [0, 0, 1]
  index = json.loads((train.cache_path / 'index.json').read_text())
  assert index['files'][0] == 'cat/000.png' and index['skipped'] == []


def test_image_folder_cache_is_reused_and_rebuilt_when_stale(folder, tmp_path, monkeypatch):
  root, _ = folder
  decoded = []
  real_decode = decode_cache.decode_image

  def counting_decode(path, image_size):
    decoded.append(path)
    return real_decode(path, image_size)

  monkeypatch.setattr(decode_cache, 'decode_image', counting_decode)
  first = sources.ImageFolderSource(root, 'train')  # default cache: next to the root
  assert first.cache_root == tmp_path / 'images.glf_jax_cache'
  assert first.cache_built and len(decoded) >= 9
  decoded.clear()
  second = sources.ImageFolderSource(root, 'train')
  assert not second.cache_built and decoded == []
  assert second.cache_path == first.cache_path
  np.testing.assert_array_equal(second[5]['image'], first[5]['image'])

  # A new file makes the cache stale: rebuilt, the old one removed.
  _write(root / 'train' / 'dog' / 'new.jpg', _pixels(99), 'JPEG')
  third = sources.ImageFolderSource(root, 'train')
  assert third.cache_built and len(third) == 10 and decoded
  assert third.cache_path != first.cache_path and not first.cache_path.exists()
  # So does a changed file (size / mtime).
  decoded.clear()
  _write(root / 'train' / 'cat' / '000.png', _pixels(7, (12, 12)))
  os.utime(root / 'train' / 'cat' / '000.png', ns=(1, 1))
  fourth = sources.ImageFolderSource(root, 'train')
  assert fourth.cache_built and fourth.cache_path != third.cache_path
  np.testing.assert_array_equal(fourth[0]['image'], _pixels(7, (12, 12)))


def test_image_folder_resizes_differing_sizes(tmp_path):
  root = tmp_path / 'mixed'
  _write(root / 'train' / 'a' / 'wide.png', _pixels(1, (10, 20)))
  _write(root / 'train' / 'a' / 'tall.jpeg', _pixels(2, (30, 15)), 'JPEG')
  _write(root / 'train' / 'b' / 'square.png', _pixels(3, (8, 8)))
  with pytest.raises(ValueError, match='image_size'):
    sources.ImageFolderSource(root, 'train', cache_dir=tmp_path / 'c1')
  source = sources.ImageFolderSource(root, 'train', image_size=8, cache_dir=tmp_path / 'c2')
  assert source.image_shape == (8, 8, 3) and len(source) == 3
  assert all(source[i]['image'].shape == (8, 8, 3) for i in range(3))
  np.testing.assert_array_equal(source[2]['image'], _pixels(3, (8, 8)))  # already 8x8: untouched


def test_image_folder_corrupt_file(folder, tmp_path):
  root, _ = folder
  bad = root / 'train' / 'dog' / 'bad.jpg'
  bad.write_bytes(b'this is not a jpeg')
  truncated = root / 'train' / 'emu' / 'cut.jpg'
  buffer = io.BytesIO()
  Image.fromarray(_pixels(5, (64, 64))).save(buffer, format='JPEG')
  truncated.write_bytes(buffer.getvalue()[:200])
  with pytest.raises(sources.CorruptImageError, match='bad.jpg|cut.jpg') as error:
    sources.ImageFolderSource(root, 'train', cache_dir=tmp_path / 'cache')
  assert error.value.path in (os.fspath(bad), os.fspath(truncated))
  assert list((tmp_path / 'cache').iterdir()) == []  # nothing half-written left behind

  skipping = sources.ImageFolderSource(root, 'train', cache_dir=tmp_path / 'cache',
                                       skip_corrupt=True)
  assert len(skipping) == 9 and skipping.num_skipped == 2
  assert sorted(s['file'] for s in skipping.index['skipped']) == ['dog/bad.jpg', 'emu/cut.jpg']
  assert 'dog/bad.jpg' not in skipping.index['files']
  assert [int(skipping[i]['label']) for i in range(9)] == [0, 0, 0, 1, 1, 1, 1, 2, 2]
  # The cache records the skips: a strict open names the file without decoding again.
  with pytest.raises(sources.CorruptImageError, match='bad.jpg.*skip_corrupt'):
    sources.ImageFolderSource(root, 'train', cache_dir=tmp_path / 'cache')


def test_image_folder_layout_errors(folder, tmp_path):
  root, _ = folder
  with pytest.raises(FileNotFoundError, match=f'{tmp_path / "nowhere"}.*<split>/<class>'):
    sources.ImageFolderSource(tmp_path / 'nowhere', 'train')
  with pytest.raises(ValueError, match=r"unknown split 'val'.*\['test', 'train'\]"):
    sources.ImageFolderSource(root, 'val', cache_dir=tmp_path / 'cache')
  (root / 'train' / 'fox').mkdir()
  (root / 'train' / 'fox' / 'notes.txt').write_text('no images here')
  with pytest.raises(ValueError, match=f'{root / "train" / "fox"} holds no images'):
    sources.ImageFolderSource(root, 'train', cache_dir=tmp_path / 'cache')
  (tmp_path / 'flat' / 'train').mkdir(parents=True)
  with pytest.raises(ValueError, match='no class folders'):
    sources.ImageFolderSource(tmp_path / 'flat', 'train', cache_dir=tmp_path / 'cache')


# ---------------------------------------------------------------------------------------------
# TFDS: the error path, and real ArrayRecord files written here without TensorFlow


def test_tfds_not_prepared_error_names_the_command(tmp_path, monkeypatch):
  config = sources.default_data_config('cifar10')
  config.data_dir = os.fspath(tmp_path)
  with pytest.raises(sources.DatasetNotPreparedError) as error:
    sources.make_source(config, 'train')
  message = str(error.value)
  assert sources.prepare_command('cifar10', os.fspath(tmp_path)) in message
  assert "download_and_prepare(file_format='array_record')" in message
  assert 'TensorFlow' in message and 'internet' in message
  assert isinstance(error.value, ValueError)

  # $TFDS_DATA_DIR is the fallback; ImageNet names its manual download step.
  monkeypatch.setenv('TFDS_DATA_DIR', os.fspath(tmp_path / 'env_dir'))
  with pytest.raises(sources.DatasetNotPreparedError) as error:
    sources.make_source(sources.default_data_config('imagenet100'), 'train')
  message = str(error.value)
  assert "tfds.builder('imagenet2012', data_dir='" + os.fspath(tmp_path / 'env_dir') in message
  assert 'ILSVRC2012_img_train.tar' in message
  assert os.fspath(tmp_path / 'env_dir' / 'downloads' / 'manual') in message


def _encoded(pixels, fmt):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt)
  return buffer.getvalue()


# Real TFDS ArrayRecord files, written here without TensorFlow (also imported by other tests).
_prepare_tfds = tfds_source.prepare_from_examples


def test_tfds_cifar10_from_local_array_record(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = tfds.features.FeaturesDict({
      'id': tfds.features.Text(),
      'image': tfds.features.Image(shape=(32, 32, 3)),
      'label': tfds.features.ClassLabel(names=CIFAR10_NAMES),
  })

  def example(i):
    return {'id': f'train_{i}', 'label': i % 10,
            'image': _encoded(np.full((32, 32, 3), 10 * i, np.uint8), 'PNG')}

  _prepare_tfds('cifar10', tmp_path, features,
                {'train': [example(i) for i in range(12)], 'test': [example(i) for i in range(3)]})
  config = sources.default_data_config('cifar10')
  config.data_dir = os.fspath(tmp_path)
  train = sources.make_source(config, 'train')
  assert len(train) == 12 and train.class_names == CIFAR10_NAMES and train.num_classes == 10
  assert train.image_shape == (32, 32, 3)
  first = train[0]
  assert first['image'].shape == (32, 32, 3) and first['image'].dtype == np.uint8
  assert first['label'].dtype == np.int32
  # TFDS stores examples in its own order: compare as a set of (pixel value, label).
  got = sorted((int(train[i]['image'][0, 0, 0]), int(train[i]['label'])) for i in range(12))
  assert got == [(10 * i, i % 10) for i in range(12)]
  assert len(sources.make_source(config, 'test')) == 3
  config.image_size = 16
  assert sources.make_source(config, 'test')[1]['image'].shape == (16, 16, 3)
  with pytest.raises(ValueError, match=r"unknown split 'validation'.*\['test', 'train'\]"):
    sources.make_source(config, 'validation')


def test_imagenet100_synsets_are_imagenet_classes():
  synsets = sources.IMAGENET100_SYNSETS
  assert len(synsets) == 100 and len(set(synsets)) == 100
  assert synsets[0] == 'n02869837' and synsets[-1] == 'n02090622'
  assert set(synsets) <= set(_imagenet_label_names())


def _imagenet_label_names():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds.builder('imagenet2012', data_dir='/nonexistent-glf-jax').info.features[
      'label'].names


def test_tfds_imagenet100_subset_from_local_array_record(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  names = _imagenet_label_names()
  features = tfds.features.FeaturesDict({
      'file_name': tfds.features.Text(),
      'image': tfds.features.Image(encoding_format='jpeg'),
      'label': tfds.features.ClassLabel(names=names),
  })
  inside = ['n02869837', 'n01558993', 'n02090622']  # subset classes
  outside = ['n01440764', 'n01443537']               # ImageNet-1k only
  synsets = inside + outside + inside

  def example(i, synset):
    size = (20 + 4 * i, 30)  # ImageNet images differ in size
    return {'file_name': f'{synset}_{i}.JPEG', 'label': names.index(synset),
            'image': _encoded(np.full((*size, 3), 20 * i, np.uint8), 'JPEG')}

  _prepare_tfds('imagenet2012', tmp_path, features, {
      'train': [example(i, s) for i, s in enumerate(synsets)],
      'validation': [example(i, s) for i, s in enumerate(outside + inside[:1])]})
  config = sources.default_data_config('imagenet100')
  config.data_dir = os.fspath(tmp_path)
  config.image_size = 16
  subset = sources.make_source(config, 'train')
  assert len(subset) == 6 and subset.num_classes == 100
  assert subset.class_names == tuple(sorted(sources.IMAGENET100_SYNSETS))
  assert subset.image_shape == (16, 16, 3)
  labels = sorted(int(subset[i]['label']) for i in range(len(subset)))
  expected = sorted(2 * [subset.class_names.index(s) for s in inside])
  assert labels == expected
  assert all(subset[i]['image'].shape == (16, 16, 3) for i in range(len(subset)))
  # The subset's rows are cached on disk (a plain .npy, no pickle) and reused.
  cached = list((tmp_path / 'glf_jax_cache').glob('imagenet100-train-*.npy'))
  assert len(cached) == 1 and len(np.load(cached[0], allow_pickle=False)) == 6
  assert list((tmp_path / 'glf_jax_cache').iterdir()) == cached  # no temporary file left
  tfds_source._SUBSET_ROWS_MEMO.clear()
  assert len(sources.make_source(config, 'train')) == 6
  # 'test' is ImageNet's validation split.
  assert len(sources.make_source(config, 'test')) == 1
  config.image_size = 0
  with pytest.raises(ValueError, match='image_size'):
    sources.make_source(config, 'train')


def _prepare_imagenet(data_dir, synsets, shade):
  """A prepared ``imagenet2012`` of JPEGs of differing sizes, pixel values from ``shade``."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  names = _imagenet_label_names()
  features = tfds.features.FeaturesDict({
      'file_name': tfds.features.Text(),
      'image': tfds.features.Image(encoding_format='jpeg'),
      'label': tfds.features.ClassLabel(names=names),
  })
  rng = np.random.default_rng(shade)

  def example(i, synset):
    size = (20 + 4 * i, 30 + 2 * (i % 3))
    return {'file_name': f'{synset}_{i}.JPEG', 'label': names.index(synset),
            'image': _encoded(rng.integers(0, 256, (*size, 3), np.uint8), 'JPEG')}

  _prepare_tfds('imagenet2012', data_dir, features, {
      'train': [example(i, s) for i, s in enumerate(synsets)],
      'validation': [example(i, s) for i, s in enumerate(synsets[:2])]})


def test_tfds_decode_cache_holds_the_decoded_images_and_follows_the_data(tmp_path):
  import pickle  # pylint: disable=g-import-not-at-top
  from glf_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  inside, outside = ['n02869837', 'n01558993', 'n02090622'], ['n01440764']
  synsets = inside + outside + inside + inside
  data_dir = tmp_path / 'tfds'
  _prepare_imagenet(data_dir, synsets, shade=0)
  config = sources.default_data_config('imagenet100')
  config.update(data_dir=os.fspath(data_dir), image_size=16,
                cache_dir=os.fspath(tmp_path / 'cache'))
  plain = sources.make_source(config, 'train')
  assert plain.cache_path is None and len(plain) == 9
  config.decode_cache = True
  cached = sources.make_source(config, 'train')
  assert cached.cache_built and cached.cache_path.parent == tmp_path / 'cache'
  # Bit for bit the images the source decodes and resizes on every read, with the same labels.
  for i in range(len(plain)):
    for key in ('image', 'label', 'index'):
      assert plain[i][key].dtype == cached[i][key].dtype
      np.testing.assert_array_equal(plain[i][key], cached[i][key])
  np.testing.assert_array_equal(plain.labels(), cached.labels())
  kwargs = dict(seed=3, global_batch_size=4, process_index=0, process_count=1)
  for a, b in zip(itertools.islice(iter(pipeline.make_loader(plain, **kwargs)), 6),
                  itertools.islice(iter(pipeline.make_loader(cached, **kwargs)), 6)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  index = json.loads((cached.cache_path / 'index.json').read_text())
  assert index['num_images'] == 9 and index['image_shape'] == [16, 16, 3]

  # Reused as it is; a worker process maps it again (pickled without its pixels).
  again = sources.make_source(config, 'train')
  assert not again.cache_built and again.cache_path == cached.cache_path
  assert 'images' not in again._decoded.__getstate__()
  unpickled = pickle.loads(pickle.dumps(again))
  np.testing.assert_array_equal(unpickled[4]['image'], plain[4]['image'])

  # Another size is another cache.
  config.image_size = 8
  small = sources.make_source(config, 'train')
  assert small.cache_built and small[0]['image'].shape == (8, 8, 3)
  config.image_size = 16

  # The data prepared again (other pixels): a new cache; the stale one of that size is removed.
  shutil.rmtree(data_dir / 'imagenet2012')
  tfds_source._SUBSET_ROWS_MEMO.clear()
  _prepare_imagenet(data_dir, synsets, shade=1)
  for record in (data_dir / 'imagenet2012').rglob('*array_record*'):
    os.utime(record, (1, 1))  # (a re-preparation within the same second, as fast tests are)
  rebuilt = sources.make_source(config, 'train')
  assert rebuilt.cache_built and rebuilt.cache_path != cached.cache_path
  assert not cached.cache_path.exists() and small.cache_path.exists()
  config.decode_cache = False
  fresh = sources.make_source(config, 'train')
  assert not np.array_equal(fresh[0]['image'], plain[0]['image'])
  for i in range(len(fresh)):
    np.testing.assert_array_equal(rebuilt[i]['image'], fresh[i]['image'])
  assert not list((tmp_path / 'cache').glob('.tmp-*'))  # nothing half-written left behind


def test_decode_cache_setting_must_be_a_bool(tmp_path):
  # (A ConfigDict refuses a str for the bool; a config given as a plain dict does not.)
  config = {**sources.default_data_config('cifar10').to_dict(), 'data_dir': os.fspath(tmp_path),
            'decode_cache': 'yes'}
  with pytest.raises(ValueError, match="data.decode_cache must be True or False, got 'yes'"):
    sources.make_source(config, 'train')


def test_decode_cache_refuses_a_cache_larger_than_the_free_space(tmp_path, monkeypatch):
  monkeypatch.setattr(decode_cache.shutil, 'disk_usage',
                      lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
  labels = np.zeros(4, np.int32)
  with pytest.raises(OSError, match=r'need 0\.0 GiB in .*which has 0\.0 GiB free; set '
                     r'data\.cache_dir'):
    decode_cache.write(tmp_path / 'c' / 'x', decode=lambda i: np.zeros((20, 20, 3), np.uint8),
                       count=4, labels=labels, what='test images', index={}, decode_workers=1)
  assert not (tmp_path / 'c' / 'x').exists() and list((tmp_path / 'c').iterdir()) == []
