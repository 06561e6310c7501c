"""The evaluators' one contract, the context they share, and the ``config.eval`` sub-tree.

An evaluator is a function ``evaluator(context, settings) -> {metric: float}`` registered under a
name with :func:`register`; its settings are ``config.eval.<name>`` (absent: no settings), and
``config.eval.evaluators`` lists the ones a run computes, in order (big_vision's
``evaluators/common.py`` is the model). The :class:`Context` holds one frozen encoder and the
evaluation data, and computes what several evaluators need once: the features of each split
(extracted in eval mode under the evaluation transform, cached on disk under a key made of the
encoder's parameters, the data and the transform, so a changed encoder or changed data never
reuses stale features).

Registered here (each in its own module): ``linear`` (linear probe), ``knn`` (weighted kNN),
``geometry`` (class compactness / separability), ``alignment`` (alignment / uniformity of two
views), ``finetune`` (fine-tuning / transfer) and ``prototype_bias`` (K augmentations per image;
not run by default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Mapping

from flax import nnx
import jax
import ml_collections
from ml_collections import config_dict
import numpy as np

from glf_jax.evaluate import features as features_lib

Evaluator = Callable[['Context', ml_collections.ConfigDict], dict]
EVALUATORS: dict[str, Evaluator] = {}
_DEFAULT_SETTINGS: dict[str, Callable[[], ml_collections.ConfigDict]] = {}


def register(name: str, default_settings: Callable[[], ml_collections.ConfigDict] | None = None):
  """Decorator: ``@register('knn', default_knn_settings)`` makes an evaluator available."""
  def wrap(fn: Evaluator) -> Evaluator:
    if name in EVALUATORS:
      raise ValueError(f'an evaluator named {name!r} already exists')
    EVALUATORS[name] = fn
    if default_settings is not None:
      _DEFAULT_SETTINGS[name] = default_settings
    return fn
  return wrap


def _fingerprint(tree) -> str:
  """A content hash of a pytree of arrays (the encoder's parameters and statistics)."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    array = np.asarray(leaf)
    digest.update(f'{array.dtype}{array.shape}'.encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()[:16]


@dataclasses.dataclass
class Context:
  """One frozen encoder and the data it is evaluated on.

  Attributes:
    eval_graphdef, params, batch_stats: the encoder (``nnx.split`` in eval mode).
    transform: ``image_size``, ``mean``, ``std``, ``crop_fraction`` of the evaluation transform
      (the encoder's input statistics).
    augment: the run's view recipes (``view1``, ``view2``), for evaluators of augmented views.
    train_source, test_source: the evaluation data (random access, ``{'image', 'label'}``).
    num_classes: classes of the evaluation data.
    seed: seeds the evaluators' randomness.
    batch_size: images per forward pass.
    cache_dir: where split features are cached (None: not cached).
    data_key: what identifies the evaluation data (part of the cache key).
  """
  eval_graphdef: Any
  params: Any
  batch_stats: Any
  transform: Mapping[str, Any]
  augment: ml_collections.ConfigDict
  train_source: Any
  test_source: Any
  num_classes: int
  seed: int = 0
  batch_size: int = 256
  cache_dir: str | None = None
  data_key: str = ''
  _features: dict = dataclasses.field(default_factory=dict, repr=False)
  _encode_fn: Any = dataclasses.field(default=None, repr=False)

  def encoder(self) -> nnx.Module:
    """A fresh eval-mode copy of the encoder (modules are mutable; the context is not)."""
    return nnx.merge(self.eval_graphdef, self.params, self.batch_stats)

  def encode_fn(self):
    """The jitted ``uint8 images -> h`` under the evaluation transform."""
    if self._encode_fn is None:
      graphdef, state = nnx.split(self.encoder())
      t = self.transform
      self._encode_fn = features_lib.make_encode_fn(
          graphdef, state, image_size=int(t['image_size']), mean=t['mean'], std=t['std'],
          crop_fraction=float(t['crop_fraction']))
    return self._encode_fn

  def features(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(features [n, d], labels [n])`` of ``'train'`` or ``'test'``, computed once."""
    if split not in self._features:
      source = {'train': self.train_source, 'test': self.test_source}[split]
      cache_path = cache_key = None
      if self.cache_dir:
        encoder_key = _fingerprint((self.params, self.batch_stats))
        cache_key = json.dumps([encoder_key, self.data_key, split, dict(self.transform)],
                               sort_keys=True, default=list)
        name = hashlib.sha256(cache_key.encode()).hexdigest()[:16]
        cache_path = os.path.join(self.cache_dir, f'{split}-{name}.npz')
      self._features[split] = features_lib.extract_features(
          self.encode_fn(), source, batch_size=self.batch_size, cache_path=cache_path,
          cache_key=cache_key or '', desc=f'features ({split})')
    return self._features[split]


def evaluate(context: Context, names, eval_config: ml_collections.ConfigDict) -> dict[str, float]:
  """Runs the evaluators ``names`` in order; one flat dict of their metrics."""
  results = {}
  for name in names:
    if name not in EVALUATORS:
      raise ValueError(f'unknown evaluator {name!r}; registered: {sorted(EVALUATORS)}')
    settings = eval_config.get(name, ml_collections.ConfigDict())
    results.update({key: float(value) for key, value in EVALUATORS[name](context, settings).items()})
  return results


def default_eval_config(info) -> ml_collections.ConfigDict:
  """``config.eval`` for a run on the dataset ``info`` (``glf_jax.data.datasets.DatasetInfo``).

  ``evaluators`` (run after pretraining and by ``mode=eval``), one settings sub-tree per evaluator,
  the evaluation data (``data.name`` None: the pretraining data; set: that dataset, its unset
  fields taken from the dataset's defaults and ``data_dir`` from the pretraining data), the splits,
  limits (None: all rows), the transform (the encoder's input: the dataset table's size and
  statistics; ImageNet-family data is centre-cropped to 0.875 first), ``compare_random_init``,
  ``embedding_examples`` (the t-SNE picture's size; 0: none) and ``checkpoint_dir`` (eval modes: the run to load; None: the workdir).
  """
  # Imported here: the evaluator modules register themselves and import this module.
  from glf_jax.evaluate import alignment, finetune, geometry, knn, linear_probe, prototype_bias  # pylint: disable=g-import-not-at-top
  del alignment, finetune, geometry, knn, linear_probe, prototype_bias
  config = ml_collections.ConfigDict(dict(
      evaluators=('linear', 'knn', 'geometry', 'alignment'),
      data=ml_collections.ConfigDict(dict(
          name=config_dict.placeholder(str), data_dir=config_dict.placeholder(str),
          root=config_dict.placeholder(str), cache_dir=config_dict.placeholder(str),
          image_size=config_dict.placeholder(int), skip_corrupt=False)),
      train_split='train',
      test_split='test',
      batch_size=256,
      max_train_examples=config_dict.placeholder(int),
      max_test_examples=config_dict.placeholder(int),
      transform=ml_collections.ConfigDict(dict(
          image_size=info.image_size, mean=tuple(info.mean), std=tuple(info.std),
          crop_fraction=0.875 if info.family == 'imagenet' else 1.0)),
      compare_random_init=False,
      # embedding.png after pretraining: a t-SNE map of at most this many test images per
      # column (seconds on a CPU for a few thousand); 0: no map.
      embedding_examples=2000,
      checkpoint_dir=config_dict.placeholder(str),
  ))
  for name, make in sorted(_DEFAULT_SETTINGS.items()):
    config[name] = make()
  return config


def validate_eval_config(eval_config: ml_collections.ConfigDict) -> None:
  unknown = [name for name in eval_config.evaluators if name not in EVALUATORS]
  if unknown:
    raise ValueError(f'eval.evaluators: unknown evaluator(s) {unknown}; registered: '
                     f'{sorted(EVALUATORS)}')
  if eval_config.batch_size < 1:
    raise ValueError(f'eval.batch_size must be >= 1, got {eval_config.batch_size!r}')
  examples = eval_config.get('embedding_examples', 0)
  if isinstance(examples, bool) or not isinstance(examples, int) or examples < 0:
    raise ValueError(f'eval.embedding_examples must be an int >= 0 (0: no embedding.png), got '
                     f'{examples!r}')
  if not 0.0 < eval_config.transform.crop_fraction <= 1.0:
    raise ValueError(f'eval.transform.crop_fraction must be in (0, 1], got '
                     f'{eval_config.transform.crop_fraction!r}')
