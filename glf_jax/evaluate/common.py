"""The evaluators' one contract and the context they share.

An evaluator is a function ``evaluator(context, settings) -> {metric: float}``; a module of
``glf_jax.evaluate`` that defines ``EVALUATOR = Evaluator(name, fn, default_settings)`` adds it to
the registry (``glf_jax.registry``). Its settings are ``config.eval.<name>`` (absent: no
settings), and ``config.eval.evaluators`` lists the ones a run computes, in order (big_vision's
``evaluators/common.py`` is the model). The :class:`Context` holds one frozen encoder and the
evaluation data, and computes what several evaluators need once: the features of each split
(extracted in eval mode under the evaluation transform, cached on disk under a key made of the
encoder's parameters, the data and the transform, so a changed encoder or changed data never
reuses stale features).
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
import numpy as np

from glf_jax.evaluate import features as features_lib

@dataclasses.dataclass(frozen=True)
class Evaluator:
  """One evaluator: its name (in ``config.eval.evaluators``), ``fn(context, settings) ->
  {metric: value}``, and the defaults of its ``config.eval.<name>`` settings (None: none)."""
  name: str
  fn: Callable[['Context', ml_collections.ConfigDict], dict]
  default_settings: Callable[[], ml_collections.ConfigDict] | None = None

  def __call__(self, context: 'Context', settings) -> dict:
    return self.fn(context, settings)


def default_transform(info) -> ml_collections.ConfigDict:
  """``config.eval.transform`` for the dataset ``info`` (``glf_jax.data.datasets.DatasetInfo``):
  the encoder's input, the table's size and statistics; ImageNet-family data is centre-cropped
  to 0.875 first."""
  return ml_collections.ConfigDict(dict(
      image_size=info.image_size, mean=tuple(info.mean), std=tuple(info.std),
      crop_fraction=0.875 if info.family == 'imagenet' else 1.0))


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
