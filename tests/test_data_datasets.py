"""Tests of the dataset table (glf_jax.data.datasets) and of what the sources read from it."""

import dataclasses

import pytest

from glf_jax.data import datasets
from glf_jax.data import sources


def test_every_source_name_has_one_table_entry():
  assert sources.SOURCE_NAMES == tuple(datasets.DATASETS)
  assert set(sources.SOURCE_NAMES) == {'cifar10', 'cifar100', 'stl10', 'imagenet2012',
                                       'imagenet100', 'image_folder', 'digits'}
  for name, info in datasets.DATASETS.items():
    assert info.name == name and datasets.dataset_info(name) is info
    assert info.kind in datasets.KINDS and info.family in datasets.FAMILIES
    assert len(info.mean) == 3 and len(info.std) == 3 and min(info.std) > 0
    # The config's data.image_size starts from the table's stored size (0: keep as stored).
    assert sources.default_data_config(name).image_size == info.stored_size


def test_table_values():
  table = datasets.DATASETS
  assert {n: i.image_size for n, i in table.items()} == {
      'cifar10': 32, 'cifar100': 32, 'stl10': 96, 'imagenet2012': 224, 'imagenet100': 224,
      'image_folder': 224, 'digits': 16}
  assert {n: i.stored_size for n, i in table.items() if i.stored_size} == {
      'imagenet2012': 224, 'imagenet100': 224, 'digits': 16}
  assert {n for n, i in table.items() if i.family == 'cifar'} == {'cifar10', 'cifar100', 'digits'}
  assert {n: i.num_classes for n, i in table.items()} == {
      'cifar10': 10, 'cifar100': 100, 'stl10': 10, 'imagenet2012': 1000, 'imagenet100': 100,
      'image_folder': None, 'digits': 10}
  assert table['cifar100'].mean == datasets.CIFAR100_MEAN
  assert table['digits'].mean == datasets.CIFAR10_MEAN
  assert table['stl10'].std == datasets.IMAGENET_STD
  assert table['imagenet100'].tfds_builder == 'imagenet2012'
  assert table['imagenet100'].splits['test'] == 'validation'
  assert table['cifar10'].splits['test'] == 'test'
  assert {n for n, i in table.items() if i.kind == 'tfds'} == {
      'cifar10', 'cifar100', 'stl10', 'imagenet2012', 'imagenet100'}
  assert table['image_folder'].tfds_builder is None and not table['image_folder'].splits


def test_table_entries_are_read_only_and_checked():
  info = datasets.dataset_info('cifar10')
  with pytest.raises(dataclasses.FrozenInstanceError):
    info.image_size = 64
  with pytest.raises(TypeError):
    info.splits['val'] = 'validation'
  with pytest.raises(ValueError, match='family'):
    dataclasses.replace(info, family='mnist')
  with pytest.raises(ValueError, match='tfds_builder'):
    dataclasses.replace(info, tfds_builder=None)


def test_unknown_dataset_lists_the_names():
  with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*'cifar10'.*'digits'"):
    datasets.dataset_info('mnist')
