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
this config. Every mode prints a table and records its results in the workdir (process 0) without
overwriting earlier ones (``glf_jax.run_records``: ``summary.json``, ``evaluations.jsonl``, the
evaluation metrics in ``metrics.jsonl`` and TensorBoard). ``plot`` redraws a run's pictures
(``glf_jax.plots``).

A run holds its workdir's lock (``glf_jax.workdir_lock``): a second run on the same workdir is
refused with the holder's pid and command.
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from glf_jax import config as config_lib
from glf_jax import interop
from glf_jax import run_records
from glf_jax import workdir_lock
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


def _data_fingerprint(source) -> str:
  """What identifies a source's content: an image folder's decode-cache fingerprint (its files'
  paths, sizes and mtimes); for TFDS and built-in data, their fixed identity in the data config."""
  cache_path = getattr(source, 'cache_path', None)
  return os.path.basename(str(cache_path)) if cache_path is not None else ''


def _subset(source, limit: int | None):
  return source if limit is None or limit >= len(source) else _Subset(source, limit)


def make_context(config, run_config, eval_graphdef, params, batch_stats, *,
                 workdir: str) -> eval_common.Context:
  """The evaluation context of an encoder trained with ``run_config``, per ``config.eval``."""
  e = config.eval
  data = eval_data_config(e, run_config.data)
  train_full, test_full = make_source(data, e.train_split), make_source(data, e.test_split)
  train_source = _subset(train_full, e.max_train_examples)
  test_source = _subset(test_full, e.max_test_examples)
  # The data's content is part of the feature cache's key (with the encoder's parameter hash):
  # changed images recompute their features.
  data_key = json.dumps([data.to_dict(), e.train_split, e.test_split, len(train_source),
                         len(test_source), _data_fingerprint(train_full),
                         _data_fingerprint(test_full)], sort_keys=True, default=list)
  return eval_common.Context(
      eval_graphdef=eval_graphdef, params=params, batch_stats=batch_stats,
      transform=run_config.eval.transform.to_dict(), augment=run_config.augment,
      train_source=train_source, test_source=test_source,
      num_classes=int(train_source.num_classes), seed=config.seed, batch_size=e.batch_size,
      cache_dir=os.path.join(workdir, 'features'), data_key=data_key)


def _print_table(columns: dict[str, dict[str, float]], title: str) -> None:
  if jax.process_index() == 0:
    print(f'\n{title}\n' + report_lib.format_table(columns), flush=True)


def _last_metrics(workdir: str) -> dict[str, Any]:
  """The last training record of ``metrics.jsonl`` (evaluation records are skipped)."""
  records = loop.read_metrics_log(os.path.join(workdir, run_records.METRICS_LOG))
  return next((r for r in reversed(records) if 'evaluation' not in r), {})


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs ``config.mode`` (see the module docstring) holding the workdir's lock; returns the
  summary. A workdir this call created is removed again if the run fails before writing into
  it."""
  config_lib.validate(config)
  workdir = os.path.abspath(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f'--workdir {workdir} is a file, not a directory')
  created = not os.path.exists(workdir)
  os.makedirs(workdir, exist_ok=True)
  try:
    # A sharded study's processes (a SLURM array) share the study's workdir; each cell takes
    # its own lock (glf_jax.study.runner), so the study itself holds none.
    shared = config.mode == 'study' and (config.study.get('shard') is not None
                                         or config.study.get('aggregate_only'))
    with workdir_lock.hold(workdir, enabled=jax.process_index() == 0 and not shared):
      return _run_mode(config, workdir)
  except BaseException:
    if created and jax.process_index() == 0:
      _remove_if_empty(workdir)
    raise


def _remove_if_empty(workdir: str) -> None:
  leftovers = set(os.listdir(workdir)) - {workdir_lock.LOCK_NAME}
  if not leftovers:
    lock = os.path.join(workdir, workdir_lock.LOCK_NAME)
    if os.path.exists(lock):
      os.remove(lock)
    os.rmdir(workdir)


def _run_mode(config, workdir):
  if config.mode == 'pretrain':
    return _pretrain(config, workdir)
  if config.mode == 'export':
    summary = interop.export_run(config, workdir)
    return run_records.record_evaluation(
        workdir, run_records.evaluation_key('export', '-', summary.get('checkpoint_dir', workdir),
                                            summary.get('step')), summary)
  if config.mode == 'study':  # cells of runs over axes and seeds, then tables and figures
    from glf_jax.study import runner as study_runner  # pylint: disable=g-import-not-at-top
    return study_runner.run_study(config, workdir)
  if config.mode == 'cohort':  # members trained in lockstep, their alignment tracked
    from glf_jax.study import cohort  # pylint: disable=g-import-not-at-top
    return cohort.run_cohort(config, workdir)
  if config.mode == 'plot':
    from glf_jax import plots  # pylint: disable=g-import-not-at-top  (matplotlib: only here)
    written = plots.redraw(workdir) if jax.process_index() == 0 else []
    for path in written:
      print(f'wrote {path}', flush=True)
    return {'mode': 'plot', 'written': written}
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
  column = 'torchvision weights' if step is None else f'step {step}'
  _print_table({column: results}, f'{config.mode} of {source_dir} on {data_name} '
               f'({len(context.train_source)} train / {len(context.test_source)} test images)')
  record = {'mode': config.mode, 'checkpoint_dir': source_dir, 'step': step,
            'objective': 'torchvision' if step is None else run_config.objective.name,
            'dataset': data_name, 'pretrained': results}
  key = run_records.evaluation_key(config.mode, data_name, source_dir, step)
  run_records.log_evaluation(workdir, key, step, {'pretrained': results})
  return run_records.record_evaluation(workdir, key, record)


def _pretrain(config, workdir):
  result = loop.pretrain(config, workdir)
  step = int(result.state['step'])
  summary = {
      'mode': 'pretrain', 'objective': config.objective.name, 'arch': config.model.arch,
      'dataset': config.data.name, 'status': 'interrupted' if result.interrupted else 'finished',
      'stop_signal': result.stop_signal,
      'step': step, 'total_steps': result.total_steps,
      'epochs': step / result.steps_per_epoch,
      # Over every session of the run (resumes included); session_seconds: this invocation.
      'train_seconds': result.train_seconds,
      'session_seconds': result.session_seconds,
      'images_per_second': result.images_per_second, 'skipped_steps': result.skipped_steps,
      'skipped_files': result.skipped_files,
      'last_metrics': _last_metrics(workdir),
  }
  if result.interrupted or not config.train.eval_after:
    summary = run_records.record_pretraining(workdir, summary)
    _draw(workdir)
    return summary
  state = jax.device_get(result.state)
  names = config.eval.evaluators
  columns = {}
  contexts = {}
  if config.eval.compare_random_init:
    # The same initial parameters the run started from (init is a function of config.seed).
    _, init_eval_graphdef, init_params, init_stats, _ = state_lib.init_encoder(config)
    init_context = make_context(config, config, init_eval_graphdef, init_params, init_stats,
                                workdir=workdir)
    columns['random init'] = eval_common.evaluate(init_context, names, config.eval)
    contexts['random init'] = init_context
    summary['random_init'] = columns['random init']
  context = make_context(config, config, result.eval_graphdef, state['params'],
                         state['batch_stats'], workdir=workdir)
  columns['pretrained'] = eval_common.evaluate(context, names, config.eval)
  contexts['pretrained'] = context
  summary['pretrained'] = columns['pretrained']
  data_name = eval_data_config(config.eval, config.data).name
  _print_table(columns, f'{config.objective.name} on {config.data.name}: {step} steps in '
               f'{result.train_seconds:.0f} s ({result.images_per_second:.1f} img/s); evaluated '
               f'on {data_name} {config.eval.test_split} ({len(context.test_source)} images)')
  key = run_records.evaluation_key('pretrain', config.data.name, workdir, step)
  run_records.log_evaluation(workdir, key, step, {c.replace(' ', '_'): r
                                                  for c, r in columns.items()})
  summary = run_records.record_pretraining(workdir, summary)
  embedding = ({name: c.features('test') for name, c in contexts.items()}
               if config.eval.embedding_examples else None)
  _draw(workdir, embedding, seed=config.seed, max_points=config.eval.embedding_examples)
  return summary


def _draw(workdir: str, embedding_columns=None, seed: int = 0,
          max_points: int | None = None) -> None:
  """``curves.png`` and (given test features) ``embedding.png`` of at most ``max_points`` test
  images per column; after the results are recorded, and a failure is a warning: a picture
  never costs a run its results."""
  if jax.process_index() != 0:
    return
  from glf_jax import plots  # pylint: disable=g-import-not-at-top  (matplotlib: only here)
  try:
    written = [plots.draw_curves(workdir)]
    if embedding_columns:
      written.append(plots.save_embedding(workdir, embedding_columns, seed=seed,
                                          max_points=max_points or plots.MAX_POINTS))
  except (OSError, ValueError, RuntimeError) as e:
    logging.warning('could not draw the pictures of %s: %s: %s', workdir, type(e).__name__, e)
    return
  names = [os.path.basename(path) for path in written if path]
  if names:
    print(f'pictures: {", ".join(names)} in {workdir} (redraw: --config configs/plot.py)',
          flush=True)
