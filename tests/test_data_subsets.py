"""The studies' data options: C-way class subsets and long-tailed training splits (data.subsets)."""

import os
import pathlib
import sys

import numpy as np
import pytest

from glf_jax.data import sources
from glf_jax.data import subsets
from glf_jax.data import tfds_source

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Class counts of the digits training split (the stratified 1,347-image split).
DIGITS_TRAIN_COUNTS = (133, 136, 133, 137, 136, 136, 136, 134, 131, 135)


def _digits(**subset):
  config = sources.default_data_config('digits')
  config.image_size = 0  # 8x8: nothing to resize
  for key, value in subset.items():
    config[key] = value
  return config


@pytest.fixture(scope='module')
def full_digits():
  config = _digits()
  return sources.make_source(config, 'train'), sources.make_source(config, 'test')


def _original_index(example_id: str) -> int:
  return int(example_id.rsplit('/', 1)[1])  # 'digits/<split>/<row>'


def test_every_data_config_has_the_keys_with_defaults_that_change_nothing(full_digits):
  for name in sources.SOURCE_NAMES:
    config = sources.default_data_config(name)
    assert config.num_classes_subset is None and config.long_tail_ratio is None
    assert config.class_subset_seed == 0
  train, _ = full_digits
  assert isinstance(train, sources.DigitsSource)  # not wrapped
  assert np.bincount(train.labels()).tolist() == list(DIGITS_TRAIN_COUNTS)


def test_class_subset_is_chosen_by_the_seed_and_the_same_in_both_splits(full_digits):
  full_train, full_test = full_digits
  chosen = {}
  for seed in range(4):
    config = _digits(num_classes_subset=3, class_subset_seed=seed)
    train, test = sources.make_source(config, 'train'), sources.make_source(config, 'test')
    again = sources.make_source(config, 'train')
    assert train.class_names == again.class_names == test.class_names  # same seed, same classes
    assert train.num_classes == test.num_classes == 3
    kept = [int(name) for name in train.class_names]  # digits' class names are their ids
    assert kept == sorted(kept) and len(set(kept)) == 3
    chosen[seed] = tuple(kept)
    for source, full in ((train, full_train), (test, full_test)):
      labels = source.labels()
      assert set(labels.tolist()) == {0, 1, 2}
      # Every example of the kept classes, none of the others, relabelled in sorted order.
      original = full.labels()
      assert len(source) == int(np.isin(original, kept).sum())
      rows = [_original_index(i) for i in source.example_ids()]
      np.testing.assert_array_equal(np.array(kept)[labels], original[rows])
  assert len(set(chosen.values())) > 1, chosen  # different seeds, different classes


def test_subset_examples_ids_and_indices_match_the_full_source(full_digits):
  full_train, _ = full_digits
  subset = sources.make_source(_digits(num_classes_subset=4, class_subset_seed=7), 'train')
  ids = subset.example_ids()
  full_ids = full_train.example_ids()
  assert len(ids) == len(subset) == len(set(ids))
  kept = [int(name) for name in subset.class_names]
  for i in (0, 1, len(subset) // 2, len(subset) - 1, -1):
    example = subset[i]
    row = _original_index(ids[i])
    assert full_ids[row] == ids[i]
    np.testing.assert_array_equal(example['image'], full_train[row]['image'])
    assert kept[int(example['label'])] == int(full_train[row]['label'])
    assert example['label'].dtype == np.int32
    assert int(example['index']) == (i if i >= 0 else len(subset) + i)  # the subset's index
  assert subset.image_shape == full_train.image_shape and subset.name == 'digits'
  assert subset.num_skipped == 0 and subset.skipped_files == ()
  with pytest.raises(IndexError):
    subset[len(subset)]


def test_long_tail_counts_follow_the_exponential_profile(full_digits):
  full_train, full_test = full_digits
  train = sources.make_source(_digits(long_tail_ratio=10.0), 'train')
  counts = np.bincount(train.labels(), minlength=10)
  # n_k = floor(131 * 10 ** (-k / 9)), n_max = 131 the smallest class of the split.
  assert counts.tolist() == [131, 101, 78, 60, 47, 36, 28, 21, 16, 13]
  assert train.num_classes == 10
  # Each class keeps its first n_k examples in index order.
  original = full_train.labels()
  rows = np.array([_original_index(i) for i in train.example_ids()])
  for k in range(10):
    np.testing.assert_array_equal(rows[train.labels() == k],
                                  np.flatnonzero(original == k)[:counts[k]])
  # The test split is not touched.
  test = sources.make_source(_digits(long_tail_ratio=10.0), 'test')
  assert len(test) == len(full_test)
  np.testing.assert_array_equal(test.labels(), full_test.labels())
  # rho = 1: balanced at n_max; an int ratio is taken too.
  balanced = sources.make_source(_digits(long_tail_ratio=1.0), 'train')
  assert np.bincount(balanced.labels()).tolist() == [131] * 10
  assert subsets.long_tail_counts(100, 3, 4.0).tolist() == [100, 50, 25]
  assert subsets.long_tail_counts(1000, 5, 100.0).tolist() == [1000, 316, 100, 31, 10]


def test_a_uniform_subset_keeps_the_first_k_of_each_class(full_digits):
  """The uniform arm of the long-tail comparison at equal size: k per class, first in order."""
  full_train, full_test = full_digits
  long_tail = sources.make_source(_digits(long_tail_ratio=10.0), 'train')
  k = len(long_tail) // 10  # the long tail's size, spread evenly
  train = sources.make_source(_digits(examples_per_class=k), 'train')
  assert np.bincount(train.labels()).tolist() == [k] * 10 and abs(len(train) - len(long_tail)) < 10
  rows = np.array([_original_index(i) for i in train.example_ids()])
  for c in range(10):
    np.testing.assert_array_equal(rows[train.labels() == c],
                                  np.flatnonzero(full_train.labels() == c)[:k])
  test = sources.make_source(_digits(examples_per_class=k), 'test')
  assert len(test) == len(full_test)  # the test split is not touched
  with pytest.raises(ValueError, match='exclude each other'):
    sources.make_source(_digits(examples_per_class=k, long_tail_ratio=10.0), 'train')
  with pytest.raises(ValueError, match=r'data\.examples_per_class must be None \(all\) or an int'):
    sources.make_source(_digits(examples_per_class=0), 'train')


def test_long_tail_of_a_class_subset(full_digits):
  config = _digits(num_classes_subset=3, class_subset_seed=2, long_tail_ratio=4.0)
  train, test = sources.make_source(config, 'train'), sources.make_source(config, 'test')
  kept = [int(name) for name in train.class_names]
  n_max = min(DIGITS_TRAIN_COUNTS[c] for c in kept)
  assert np.bincount(train.labels()).tolist() == [n_max, n_max // 2, n_max // 4]
  _, full_test = full_digits
  assert test.class_names == train.class_names
  assert len(test) == int(np.isin(full_test.labels(), kept).sum())  # balanced, not cut


@pytest.mark.parametrize('key, value, message', [
    ('num_classes_subset', 1, r'data\.num_classes_subset must be None \(all classes\) or an int '
                              r'>= 2, got 1'),
    ('num_classes_subset', 11, r'data\.num_classes_subset must be between 2 and the 10 classes '
                               r"of 'digits', got 11"),
    ('class_subset_seed', -1, r'data\.class_subset_seed must be an int >= 0, got -1'),
    ('long_tail_ratio', 0.5, r'data\.long_tail_ratio must be None \(as is\) or a number >= 1'),
    ('long_tail_ratio', float('nan'), r'data\.long_tail_ratio must be None'),
    ('long_tail_ratio', 1000.0, r'data\.long_tail_ratio=1000 leaves class 9 with no examples '
                                r'\(n_max=131\); use a ratio <= 131'),
])
def test_bad_values_give_one_line_errors_naming_the_key(key, value, message):
  config = _digits()
  config[key] = value
  with pytest.raises(ValueError, match=message) as error:
    sources.make_source(config, 'train')
  assert '\n' not in str(error.value)


def test_bad_types_are_refused_before_any_data_is_read():
  config = {'name': 'digits', 'num_classes_subset': True}
  with pytest.raises(ValueError, match='data.num_classes_subset'):
    sources.make_source(config, 'train')
  config = {'name': 'cifar10', 'data_dir': '/nonexistent-glf-jax', 'long_tail_ratio': 'ten'}
  with pytest.raises(ValueError, match='data.long_tail_ratio'):  # not DatasetNotPreparedError
    sources.make_source(config, 'train')


def test_image_folder_subset_remaps_labels_and_forwards_attributes(tmp_path):
  from tests.test_data_sources import _make_folder  # pylint: disable=g-import-not-at-top
  root = tmp_path / 'images'
  _make_folder(root, {'train': {'cat': 3, 'dog': 4, 'emu': 2, 'fox': 1},
                      'test': {'cat': 2, 'dog': 1, 'emu': 1, 'fox': 1}})
  config = sources.default_data_config('image_folder')
  config.root, config.cache_dir = os.fspath(root), os.fspath(tmp_path / 'cache')
  config.num_classes_subset, config.class_subset_seed = 2, 3
  train, test = sources.make_source(config, 'train'), sources.make_source(config, 'test')
  names = ('cat', 'dog', 'emu', 'fox')
  kept = subsets.chosen_classes(4, 2, 3).tolist()
  assert train.class_names == test.class_names == tuple(names[c] for c in kept)
  for source in (train, test):
    for i in range(len(source)):
      class_name = source.example_ids()[i].split('/')[2]  # image_folder/<split>/<class>/<file>
      assert source.class_names[int(source[i]['label'])] == class_name
  assert len(train) == sum((3, 4, 2, 1)[c] for c in kept)
  # What others read of an image folder source passes through the wrapper.
  assert train.cache_path == train.source.cache_path and train.cache_path.is_dir()
  assert train.root == root and train.num_skipped == 0 and train.cache_built in (True, False)
  with pytest.raises(AttributeError):
    train.no_such_attribute  # pylint: disable=pointless-statement


def test_tfds_subset_reads_labels_without_decoding(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tests import test_data_sources as helpers  # pylint: disable=g-import-not-at-top
  features = tfds.features.FeaturesDict({
      'id': tfds.features.Text(),
      'image': tfds.features.Image(shape=(32, 32, 3)),
      'label': tfds.features.ClassLabel(names=helpers.CIFAR10_NAMES),
  })

  def example(i):
    return {'id': f'train_{i}', 'label': i % 10,
            'image': helpers._encoded(np.full((32, 32, 3), 10 * i, np.uint8), 'PNG')}

  helpers._prepare_tfds('cifar10', tmp_path, features,
                        {'train': [example(i) for i in range(20)],
                         'test': [example(i) for i in range(10)]})
  config = sources.default_data_config('cifar10')
  config.data_dir = os.fspath(tmp_path)
  full = sources.make_source(config, 'train')
  assert isinstance(full, tfds_source.TfdsSource)
  np.testing.assert_array_equal(full.labels(), [int(full[i]['label']) for i in range(20)])
  config.num_classes_subset, config.class_subset_seed = 3, 5
  train, test = sources.make_source(config, 'train'), sources.make_source(config, 'test')
  kept = subsets.chosen_classes(10, 3, 5).tolist()
  assert train.class_names == tuple(helpers.CIFAR10_NAMES[c] for c in kept)
  assert (len(train), len(test)) == (6, 3)
  for source in (train, test):
    for i in range(len(source)):
      value = int(source[i]['image'][0, 0, 0])  # example i has pixels 10 * i, label i % 10
      assert kept[int(source[i]['label'])] == (value // 10) % 10


@pytest.mark.slow
def test_pretraining_on_a_class_subset_trains_and_evaluates(tmp_path):
  sys.path.insert(0, str(ROOT))
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  from glf_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from glf_jax import main  # pylint: disable=g-import-not-at-top
  config = config_lib.tiny(quickstart.get_config())
  config.data.num_classes_subset, config.data.class_subset_seed = 3, 1
  config.train.num_steps, config.train.batch_size, config.train.eval_after = 2, 32, True
  config.eval.linear.epochs = 2
  config.eval.compare_random_init = False
  config.eval.evaluators = ('linear', 'knn')
  config.eval.embedding_examples = 0  # no t-SNE picture
  summary = main.run(config, str(tmp_path / 'run'))
  assert summary['step'] == 2 and summary['skipped_steps'] == 0
  assert np.isfinite(summary['last_metrics']['probe/loss'])  # the online probe has 3 outputs
  # Train and test agree on the 3 classes' labels: even a 2-step encoder separates 3 digits.
  assert summary['pretrained']['knn/k20'] > 0.6, summary['pretrained']
  assert summary['pretrained']['linear/top1'] > 0.5, summary['pretrained']
  # A classifier method must be told the subset's number of classes.
  ce = config_lib.base_config('ce', 'digits', 'resnet_tiny')
  ce.data.num_classes_subset = 3
  ce.train.num_steps, ce.train.batch_size = 2, 32
  with pytest.raises(ValueError, match='model.num_classes is 10 but the training data has 3'):
    main.run(ce, str(tmp_path / 'ce'))
