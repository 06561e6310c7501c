"""Evaluation of frozen encoders (docs/maths.md §4): one contract for every evaluator.

* ``common``: the contract ``evaluator(context, settings) -> {metric: value}`` (an
  :class:`~glf_jax.evaluate.common.Evaluator` record) and the shared
  :class:`~glf_jax.evaluate.common.Context` (one encoder, the evaluation data, features computed
  once and cached).
* Evaluators, one module each (the package is their registry, ``glf_jax.registry``):
  ``linear_probe`` (``linear``), ``knn``, ``geometry``, ``alignment``, ``finetune`` (fine-tuning /
  transfer), ``prototype_bias`` (K augmentations per image; not run by default).
* ``encoder``: the encoder of a saved run or a torchvision weights file; ``raw_pixels``: the
  image itself as the encoder (the baseline column); ``features``: feature extraction and its
  cache; ``report.format_table``: results side by side.

Owns ``config.eval`` (:func:`default_eval_config`, :func:`validate_eval_config`). Imports: models,
data, metrics, losses (similarity), run (checkpoints), runtime, registry; never the training code.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from glf_jax import registry
from glf_jax.evaluate import common
from glf_jax.evaluate.common import Context, Evaluator
from glf_jax.evaluate.features import extract_features, make_encode_fn
from glf_jax.evaluate.knn import knn_accuracy
from glf_jax.evaluate.raw_pixels import raw_pixels_context
from glf_jax.evaluate.report import format_table

EVALUATORS: dict[str, Evaluator] = registry.collect(__name__, 'EVALUATOR', Evaluator)


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
  limits (None: all rows), the transform (``common.default_transform``), ``compare_random_init``,
  ``compare_raw_pixels`` (the evaluators on the raw pixels too, ``raw_pixels``; default: for
  images of at most 64 px), ``embedding_examples`` (the t-SNE picture's size; 0: none) and
  ``checkpoint_dir`` (eval modes: the run to load; None: the workdir).
  """
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
      transform=common.default_transform(info),
      compare_random_init=False,
      # A 'raw pixels' column (glf_jax.evaluate.raw_pixels): the floor a representation must
      # clear. On by default where images are small (CIFAR, digits: seconds); ImageNet-size
      # data reads every image a second time for it.
      compare_raw_pixels=info.image_size <= 64,
      # embedding.png after pretraining: a t-SNE map of at most this many test images per
      # column (seconds on a CPU for a few thousand); 0: no map.
      embedding_examples=2000,
      checkpoint_dir=config_dict.placeholder(str),
  ))
  for name, evaluator in sorted(EVALUATORS.items()):
    if evaluator.default_settings is not None:
      config[name] = evaluator.default_settings()
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


__all__ = [
    'Context',
    'EVALUATORS',
    'Evaluator',
    'default_eval_config',
    'evaluate',
    'extract_features',
    'format_table',
    'knn_accuracy',
    'make_encode_fn',
    'raw_pixels_context',
    'validate_eval_config',
]
