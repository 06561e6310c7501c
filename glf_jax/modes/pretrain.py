"""The ``pretrain`` mode: ``glf_jax.train.pretrain``, then (``train.eval_after``) the evaluators of
``config.eval.evaluators`` on the pretrained encoder — and, side by side, with
``eval.compare_raw_pixels`` on the raw pixels (``glf_jax.evaluate.raw_pixels``) and with
``eval.compare_random_init`` on the same network at its initialisation — then the pictures.

A finished run (trained to its last step and evaluated, with the config it was trained with) is
left as it is when run again: one line says so and where its results are, and its summary is
returned; ``--config.mode=eval`` evaluates it again. A run stopped while it evaluated is
evaluated again."""

from __future__ import annotations

import os
from typing import Any

from absl import logging
import jax

from glf_jax import evaluate as evaluate_lib
from glf_jax.data import sources
from glf_jax.modes.evaluation import eval_data_config, make_context, print_table
from glf_jax.run import checkpoint
from glf_jax.run import layout
from glf_jax.run import metrics_log
from glf_jax.run import records
from glf_jax.run import saved_config
from glf_jax.run.session import NonFiniteLossError
from glf_jax.train import state as state_lib
from glf_jax.train.pretrain import pretrain


def _last_metrics(workdir: str) -> dict[str, Any]:
  """The last training record of ``metrics.jsonl`` (evaluation records are skipped)."""
  logged = metrics_log.read(layout.path(workdir, layout.METRICS_LOG))
  return next((r for r in reversed(logged) if 'evaluation' not in r), {})


def _training_record(config, workdir, result) -> dict[str, Any]:
  step = int(result.state['step'])
  return {
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


def _finished(config, workdir) -> dict | None:
  """The summary of the run in ``workdir`` when it has nothing left to do with ``config``: its
  summary says finished (and, with ``train.eval_after``, evaluated) at the step of its latest
  checkpoint, which is its last step, and ``config`` trains what it trained. None otherwise: a
  run killed while it evaluated is evaluated again, a changed config is refused or trains on
  (``allow_config_change``) by the session."""
  summary = records.read_summary(workdir)
  if summary.get('status') != 'finished' or (config.train.eval_after
                                             and 'pretrained' not in summary):
    return None
  directory = checkpoint.checkpoint_dir(workdir)
  meta = checkpoint.read_meta(directory)
  if meta is not None:
    checkpoint.check_format(meta, directory)  # another layout: refused as a resume refuses it
  if (meta is None or meta.get('step') != summary.get('step')
      or meta['step'] < meta.get('total_steps', meta['step'] + 1)
      or saved_config.config_differences(meta['config'], config)):
    return None
  saved_config.restore_if_edited(workdir, saved_config.started_config(workdir, meta))
  return summary


def run_pretrain(config, workdir):
  """Pretrains, evaluates, records and draws; returns the summary. A finished run is left as it
  is (its summary returned, with a line saying so): evaluating it again is ``mode=eval``."""
  finished = _finished(config, workdir)
  if finished is not None:
    if jax.process_index() == 0:
      print(f'{workdir} holds a finished run (step {finished["step"]}'
            f'{", evaluated" if "pretrained" in finished else ""}): nothing to do; its results are '
            f'in {layout.path(workdir, layout.SUMMARY)}. To evaluate it again: '
            '--config.mode=eval; to train longer: a larger train.num_steps (or train.epochs) '
            'with --config.allow_config_change=True', flush=True)
    return finished
  try:
    result = pretrain(config, workdir)
  except NonFiniteLossError as e:
    # The run stops here: its record says so (status, where, why) before the error line.
    records.record_pretraining(workdir, {
        'mode': 'pretrain', 'objective': config.objective.name, 'arch': config.model.arch,
        'dataset': config.data.name, 'status': 'stopped: non-finite', 'step': e.step,
        'checkpoint_step': e.checkpoint_step, 'error': str(e),
        'last_metrics': _last_metrics(workdir)})
    raise
  summary = _training_record(config, workdir, result)
  if result.interrupted or not config.train.eval_after:
    summary = records.record_pretraining(workdir, summary)
    _draw(workdir)
    return summary
  contexts, columns = _evaluate(config, workdir, result)
  summary.update({column.replace(' ', '_'): results for column, results in columns.items()})
  test_source = contexts['pretrained'].test_source
  step = summary['step']
  print_table(columns, f'{config.objective.name} on {sources.data_name(config.data)}: {step} '
              f'steps in {result.train_seconds:.0f} s ({result.images_per_second:.1f} img/s); '
              f'evaluated on {sources.data_name(eval_data_config(config.eval, config.data))} '
              f'{config.eval.test_split} ({len(test_source)} images)')
  key = records.evaluation_key('pretrain', config.data.name, workdir, step)
  records.log_evaluation(workdir, key, step, {c.replace(' ', '_'): r
                                              for c, r in columns.items()})
  summary = records.record_pretraining(workdir, summary)
  embedding = ({name: c.features('test') for name, c in contexts.items()}
               if config.eval.embedding_examples else None)
  _draw(workdir, embedding, seed=config.seed, max_points=config.eval.embedding_examples,
        class_names=test_source.class_names)
  return summary


def _evaluate(config, workdir, result) -> tuple[dict, dict]:
  """The evaluators of ``config.eval`` on the pretrained encoder and, as switched on, on the raw
  pixels and on the same network at its initialisation: ``(contexts, columns)``, both keyed by
  the table's column names (``'raw pixels'``, ``'random init'``, ``'pretrained'``, in order)."""
  state = jax.device_get(result.state)
  pretrained = make_context(config, config, result.eval_graphdef, state['params'],
                            state['batch_stats'], workdir=workdir)
  contexts = {}
  if config.eval.compare_raw_pixels:
    contexts['raw pixels'] = evaluate_lib.raw_pixels_context(pretrained)
  if config.eval.compare_random_init:
    # The same initial parameters the run started from (init is a function of config.seed).
    _, init_eval_graphdef, init_params, init_stats, _ = state_lib.init_encoder(config)
    contexts['random init'] = make_context(config, config, init_eval_graphdef, init_params,
                                           init_stats, workdir=workdir)
  contexts['pretrained'] = pretrained
  columns = {name: evaluate_lib.evaluate(context, config.eval.evaluators, config.eval)
             for name, context in contexts.items()}
  return contexts, columns


def _draw(workdir: str, embedding_columns=None, seed: int = 0,
          max_points: int | None = None, class_names=None) -> None:
  """``curves.png`` and (given test features) ``embedding.png`` of at most ``max_points`` test
  images per column; after the results are recorded, and a failure is a warning: a picture
  never costs a run its results."""
  if jax.process_index() != 0:
    return
  from glf_jax.plots import run as plots  # pylint: disable=g-import-not-at-top  (matplotlib)
  try:
    written = [plots.draw_curves(workdir)]
    if embedding_columns:
      max_points = max_points or plots.MAX_POINTS
      images = min(max_points, min(len(labels) for _, labels in embedding_columns.values()))
      # A t-SNE per column: a minute or more on a CPU for a few thousand images.
      print(f'drawing {layout.EMBEDDING} (t-SNE of {images} test images, '
            f'{len(embedding_columns)} column{"s" if len(embedding_columns) > 1 else ""})...',
            flush=True)
      written.append(plots.save_embedding(workdir, embedding_columns, seed=seed,
                                          max_points=max_points, class_names=class_names))
  except (OSError, ValueError, RuntimeError) as e:
    logging.warning('could not draw the pictures of %s: %s: %s', workdir, type(e).__name__, e)
    return
  names = [os.path.basename(path) for path in written if path]
  if names:
    print(f'pictures: {", ".join(names)} in {workdir} (redraw: --config configs/plot.py)',
          flush=True)
