"""The eval modes (``eval``, ``linear_probe``, ``knn``, ``finetune``) and the evaluation context
every mode builds for an encoder.

In the eval modes the encoder, its input transform, its view recipes and (unless ``eval.data`` is
set) its data come from the evaluated run's saved config; the evaluators and their settings from
this config, which also says whether the table has a raw-pixel column
(``eval.compare_raw_pixels``, ``glf_jax.evaluate.raw_pixels``). ``eval.checkpoint_dir`` (default:
the workdir) may also be a torchvision ResNet ``.safetensors`` file (``glf_jax.evaluate.encoder``;
set ``eval.data.name``).
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np

from glf_jax import evaluate as evaluate_lib
from glf_jax.data import make_source, sources
from glf_jax.evaluate import encoder as encoder_lib
from glf_jax.run import checkpoint
from glf_jax.run import layout
from glf_jax.run import records

MODE_EVALUATORS = {'linear_probe': ('linear',), 'knn': ('knn',), 'finetune': ('finetune',)}


def eval_data_config(eval_config: ml_collections.ConfigDict,
                     run_data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The evaluation data: ``run_data`` unless ``eval.data.name`` is set; then that dataset's
  defaults, overridden by the set fields of ``eval.data``, ``data_dir`` inherited."""
  wanted = eval_config.data
  if wanted.name is None:
    return run_data
  data = sources.default_data_config(wanted.name)
  for key, value in wanted.items():
    if value is not None:
      data[key] = value
  if data.data_dir is None:
    data.data_dir = run_data.get('data_dir')
  return data


class _Subset:
  """Evenly spaced rows of a source: a fixed, class-mixed subset (sources are not shuffled)."""

  def __init__(self, source, limit: int):
    self._source = source
    self._rows = np.linspace(0, len(source) - 1, limit).astype(np.int64)
    self.num_classes = source.num_classes
    self.class_names = source.class_names
    self.image_shape = source.image_shape

  def __len__(self):
    return len(self._rows)

  def __getitem__(self, i):
    return self._source[int(self._rows[i])]


def _data_fingerprint(source) -> str:
  """What identifies a source's content: an image folder's decode-cache fingerprint (its files'
  paths, sizes and mtimes); for TFDS and built-in data, their fixed identity in the data config."""
  cache_path = getattr(source, 'cache_path', None)
  return os.path.basename(str(cache_path)) if cache_path is not None else ''


def _subset(source, limit: int | None):
  return source if limit is None or limit >= len(source) else _Subset(source, limit)


def make_context(config, run_config, eval_graphdef, params, batch_stats, *,
                 workdir: str) -> evaluate_lib.Context:
  """The evaluation context of an encoder trained with ``run_config``, per ``config.eval``."""
  e = config.eval
  data = eval_data_config(e, run_config.data)
  train_full, test_full = make_source(data, e.train_split), make_source(data, e.test_split)
  where = (f'image folder {data.root}' if data.name == 'image_folder'
           else f'the evaluation data {data.name}')
  sources.check_shared_classes(train_full, test_full, where)
  train_source = _subset(train_full, e.max_train_examples)
  test_source = _subset(test_full, e.max_test_examples)
  # The data's content is part of the feature cache's key (with the encoder's parameter hash):
  # changed images recompute their features.
  data_key = json.dumps([data.to_dict(), e.train_split, e.test_split, len(train_source),
                         len(test_source), _data_fingerprint(train_full),
                         _data_fingerprint(test_full)], sort_keys=True, default=list)
  return evaluate_lib.Context(
      eval_graphdef=eval_graphdef, params=params, batch_stats=batch_stats,
      transform=run_config.eval.transform.to_dict(), augment=run_config.augment,
      train_source=train_source, test_source=test_source,
      num_classes=int(train_source.num_classes), seed=config.seed, batch_size=e.batch_size,
      cache_dir=layout.path(workdir, layout.FEATURES), data_key=data_key)


def print_table(columns: dict[str, dict[str, float]], title: str) -> None:
  if jax.process_index() == 0:
    print(f'\n{title}\n' + evaluate_lib.format_table(columns), flush=True)


def evaluate_saved(config, workdir):
  """An eval mode: the evaluators on the encoder of ``eval.checkpoint_dir`` (default: the
  workdir); records the results and returns the summary."""
  source_dir = config.eval.checkpoint_dir or workdir
  if config.eval.checkpoint_dir is None and checkpoint.read_meta(
      checkpoint.checkpoint_dir(workdir)) is None:
    raise FileNotFoundError(
        f'eval.checkpoint_dir is not set, and the workdir {workdir} holds no checkpoint to '
        f'evaluate: set --config.eval.checkpoint_dir to a pretrained run\'s workdir (or to a '
        'torchvision .safetensors file)')
  # A run's workdir, or a torchvision .safetensors file (step None, no objective).
  run_config, eval_graphdef, params, batch_stats, step = encoder_lib.load_evaluated_encoder(
      config, source_dir)
  names = MODE_EVALUATORS.get(config.mode, config.eval.evaluators)
  context = make_context(config, run_config, eval_graphdef, params, batch_stats, workdir=workdir)
  columns = {}
  if config.eval.compare_raw_pixels:
    columns['raw pixels'] = evaluate_lib.evaluate(evaluate_lib.raw_pixels_context(context), names,
                                                  config.eval)
  results = evaluate_lib.evaluate(context, names, config.eval)
  data = eval_data_config(config.eval, run_config.data)
  columns['torchvision weights' if step is None else f'step {step}'] = results
  print_table(columns, f'{config.mode} of {source_dir} on {sources.data_name(data)} '
              f'({len(context.train_source)} train / {len(context.test_source)} test images)')
  record = {'mode': config.mode, 'checkpoint_dir': source_dir, 'step': step,
            'objective': 'torchvision' if step is None else run_config.objective.name,
            'dataset': data.name, 'pretrained': results}
  logged = {'pretrained': results}
  if 'raw pixels' in columns:
    record['raw_pixels'] = logged['raw_pixels'] = columns['raw pixels']
  key = records.evaluation_key(config.mode, data.name, source_dir, step)
  records.log_evaluation(workdir, key, step, logged)
  return records.record_evaluation(workdir, key, record)
