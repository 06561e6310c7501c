"""What each ``config.mode`` does (SPEC §4).

* ``pretrain``: :func:`glf_jax.train.loop.pretrain`, then (``train.eval_after``) the evaluators of
  ``config.eval.evaluators`` on the pretrained encoder — and, with ``eval.compare_random_init``,
  on the same network at its initialisation, side by side.
* ``eval``: the evaluators of ``config.eval.evaluators`` on the encoder saved in
  ``eval.checkpoint_dir`` (default: the workdir); ``linear_probe``, ``knn`` and ``finetune`` run
  that one evaluator (``finetune`` on ``eval.data``: transfer). ``eval.checkpoint_dir`` may also
  be a torchvision ResNet ``.safetensors`` file (``glf_jax.interop``; set ``eval.data.name``).
* ``export``: the backbone of the run in ``eval.checkpoint_dir`` as a torchvision state dict
  (``glf_jax.interop.export_run``).

In the eval modes the encoder, its input transform, its view recipes and (unless ``eval.data`` is
set) its data come from the evaluated run's saved config; the evaluators and their settings from
this config. Every mode prints a table and writes ``summary.json`` to the workdir (process 0).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from glf_jax import config as config_lib
from glf_jax import fileio
from glf_jax import interop
from glf_jax.data import make_source, sources
from glf_jax.evaluate import common as eval_common
from glf_jax.evaluate import report as report_lib
from glf_jax.train import loop
from glf_jax.train import state as state_lib

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
    self.image_shape = source.image_shape

  def __len__(self):
    return len(self._rows)

  def __getitem__(self, i):
    return self._source[int(self._rows[i])]


def _subset(source, limit: int | None):
  return source if limit is None or limit >= len(source) else _Subset(source, limit)


def make_context(config, run_config, eval_graphdef, params, batch_stats, *,
                 workdir: str) -> eval_common.Context:
  """The evaluation context of an encoder trained with ``run_config``, per ``config.eval``."""
  e = config.eval
  data = eval_data_config(e, run_config.data)
  train_source = _subset(make_source(data, e.train_split), e.max_train_examples)
  test_source = _subset(make_source(data, e.test_split), e.max_test_examples)
  data_key = json.dumps([data.to_dict(), e.train_split, e.test_split, len(train_source),
                         len(test_source)], sort_keys=True, default=list)
  return eval_common.Context(
      eval_graphdef=eval_graphdef, params=params, batch_stats=batch_stats,
      transform=run_config.eval.transform.to_dict(), augment=run_config.augment,
      train_source=train_source, test_source=test_source,
      num_classes=int(train_source.num_classes), seed=config.seed, batch_size=e.batch_size,
      cache_dir=os.path.join(workdir, 'features'), data_key=data_key)


def _print_table(columns: dict[str, dict[str, float]], title: str) -> None:
  if jax.process_index() == 0:
    print(f'\n{title}\n' + report_lib.format_table(columns), flush=True)


def _write_summary(workdir: str, summary: dict) -> None:
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, 'summary.json')
  with fileio.atomic_write(path, 'w', encoding='utf-8') as f:
    json.dump(summary, f, indent=2, default=float)
  print(f'summary written to {path}', flush=True)


def _last_metrics(workdir: str) -> dict[str, Any]:
  records = loop.read_metrics_log(os.path.join(workdir, 'metrics.jsonl'))
  return records[-1] if records else {}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs ``config.mode`` (see the module docstring); returns the summary."""
  config_lib.validate(config)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  if config.mode == 'pretrain':
    return _pretrain(config, workdir)
  if config.mode == 'export':
    summary = interop.export_run(config, workdir)
    _write_summary(workdir, summary)
    return summary
  return _evaluate_saved(config, workdir)


def _evaluate_saved(config, workdir):
  source_dir = config.eval.checkpoint_dir or workdir
  # A run's workdir, or a torchvision .safetensors file (step None, no objective).
  run_config, eval_graphdef, params, batch_stats, step = interop.load_evaluated_encoder(
      config, source_dir)
  names = MODE_EVALUATORS.get(config.mode, config.eval.evaluators)
  context = make_context(config, run_config, eval_graphdef, params, batch_stats, workdir=workdir)
  results = eval_common.evaluate(context, names, config.eval)
  data_name = eval_data_config(config.eval, run_config.data).name
  _print_table({'torchvision weights' if step is None else f'step {step}': results},
               f'{config.mode} of {source_dir} on {data_name}')
  summary = {'mode': config.mode, 'checkpoint_dir': source_dir, 'step': step,
             'objective': 'torchvision' if step is None else run_config.objective.name,
             'dataset': data_name,
             'pretrained': results}
  _write_summary(workdir, summary)
  return summary


def _pretrain(config, workdir):
  result = loop.pretrain(config, workdir)
  step = int(result.state['step'])
  summary = {
      'mode': 'pretrain', 'objective': config.objective.name, 'arch': config.model.arch,
      'dataset': config.data.name, 'status': 'interrupted' if result.interrupted else 'finished',
      'stop_signal': result.stop_signal,
      'step': step, 'total_steps': result.total_steps,
      'epochs': step / result.steps_per_epoch, 'train_seconds': result.train_seconds,
      'images_per_second': result.images_per_second, 'skipped_steps': result.skipped_steps,
      'last_metrics': _last_metrics(workdir),
  }
  if result.interrupted or not config.train.eval_after:
    _write_summary(workdir, summary)
    return summary
  state = jax.device_get(result.state)
  names = config.eval.evaluators
  columns = {}
  if config.eval.compare_random_init:
    # The same initial parameters the run started from (init is a function of config.seed).
    _, init_eval_graphdef, init_params, init_stats, _ = state_lib.init_encoder(config)
    context = make_context(config, config, init_eval_graphdef, init_params, init_stats,
                           workdir=workdir)
    columns['random init'] = eval_common.evaluate(context, names, config.eval)
    summary['random_init'] = columns['random init']
  context = make_context(config, config, result.eval_graphdef, state['params'],
                         state['batch_stats'], workdir=workdir)
  columns['pretrained'] = eval_common.evaluate(context, names, config.eval)
  summary['pretrained'] = columns['pretrained']
  _print_table(columns, f'{config.objective.name} on {config.data.name}: {step} steps '
               f'({result.train_seconds:.0f} s, {result.images_per_second:.1f} img/s)')
  _write_summary(workdir, summary)
  return summary
