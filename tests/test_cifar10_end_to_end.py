"""End to end on CIFAR-10-sized JPEGs: folder -> cache -> grain loader -> 8-device mesh -> views.

On the made image folder of ``tests/conftest.py`` (CIFAR-10's layout and sizes), and on a few
hundred real CIFAR-10 JPEGs streamed out of the archive that ``$GLF_JAX_CIFAR10_ARCHIVE`` names
(skipped, in one line, when it is not set).
"""

import functools

import jax
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from glf_jax.runtime import devices
from glf_jax.data import pipeline
from glf_jax.data import sources

from tests.conftest import CLASSES, GLOBAL_BATCH  # the folders' fixtures are in conftest


@pytest.fixture(params=['image_root', 'cifar10_root'])
def folder_root(request):
  """The made folder, then the real CIFAR-10 one (when its archive is given)."""
  return request.getfixturevalue(request.param)


@functools.cache
def _sharded_two_views():
  """``jit(two_views)`` with the SimCLR CIFAR recipe on the 8-device mesh (compiled once)."""
  from glf_jax.data.augment import simclr_config, two_views  # pylint: disable=g-import-not-at-top
  mesh = devices.make_mesh()
  config = simclr_config(32, dataset='cifar10')
  batch_sharding = devices.data_sharding(mesh)
  # The batch stays sharded over 'data' in and out, as in the train step.
  views = jax.jit(lambda key, images: two_views(key, images, config),
                  in_shardings=(devices.replicated(mesh), batch_sharding),
                  out_shardings=(batch_sharding, batch_sharding))
  return mesh, views


def _run(root, cache_dir, seed, steps=3):
  """Batches and views of ``steps`` steps; everything random derives from ``seed``."""
  source = sources.ImageFolderSource(root, 'train', cache_dir=cache_dir)
  loader = pipeline.make_loader(source, seed=seed, global_batch_size=GLOBAL_BATCH)
  mesh, views = _sharded_two_views()
  base_key = jax.random.key(seed)
  labels, results = [], []
  it = iter(loader)
  for step in range(steps):
    batch = devices.to_global_batch(next(it), mesh)
    v1, v2 = views(jax.random.fold_in(base_key, step), batch['image'])
    labels.append(np.asarray(batch['label']))
    results.append((v1, v2))
  return source, labels, results


def test_cifar10_folder_to_sharded_views(folder_root, tmp_path):
  cache = tmp_path / 'cache'
  test_split = sources.ImageFolderSource(folder_root, 'test', cache_dir=cache)
  assert len(test_split) == 40 and test_split.class_names == CLASSES

  source, labels, results = _run(folder_root, cache, seed=0)
  assert source.cache_built and len(source) == 400
  assert source.image_shape == (32, 32, 3) and source.class_names == CLASSES
  image = source[0]['image']
  assert image.dtype == np.uint8 and 20 < image.mean() < 235  # an image, not a blank
  for v1, v2 in results:
    for view in (v1, v2):
      assert view.shape == (GLOBAL_BATCH, 32, 32, 3)
      assert view.sharding.spec == P('data') and len(view.sharding.device_set) == 8
      assert np.all(np.isfinite(np.asarray(view, np.float32)))
    assert not np.array_equal(np.asarray(v1), np.asarray(v2))
  # Each step's batch holds distinct examples with CIFAR labels.
  assert all(len(np.unique(batch)) > 5 and batch.max() < 10 for batch in labels)

  # Same seed: same batches in the same order and the same views (the cache is reused).
  again, labels_again, results_again = _run(folder_root, cache, seed=0)
  assert not again.cache_built
  for a, b in zip(labels, labels_again):
    np.testing.assert_array_equal(a, b)
  for (a1, a2), (b1, b2) in zip(results, results_again):
    np.testing.assert_array_equal(np.asarray(a1), np.asarray(b1))
    np.testing.assert_array_equal(np.asarray(a2), np.asarray(b2))

  # Another seed: another order and other views.
  _, labels_other, results_other = _run(folder_root, cache, seed=1, steps=1)
  assert not np.array_equal(labels_other[0], labels[0])
  assert not np.array_equal(np.asarray(results_other[0][0]), np.asarray(results[0][0]))
