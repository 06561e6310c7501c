"""What each ``config.mode`` does, and the evaluation of an encoder (SPEC §4).

* ``pretrain``: :func:`glf_jax.train.loop.pretrain`, then (``train.eval_after``) the evaluation of
  the pretrained encoder — and, with ``eval.compare_random_init``, of the same network at its
  initialisation, side by side.
* ``eval`` / ``linear_probe`` / ``knn``: evaluate the encoder saved in ``eval.checkpoint_dir``
  (default: the workdir).
* ``finetune``: transfer the saved encoder's backbone to ``eval.data`` (full fine-tuning, or a
  linear classifier on the frozen backbone with ``eval.finetune.freeze_backbone``).

Every mode prints a table and writes ``summary.json`` to the workdir (process 0).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
from flax import nnx
import ml_collections
import numpy as np

from glf_jax import metrics
from glf_jax.data import augment, make_source
from glf_jax.evaluate import features as features_lib
from glf_jax.evaluate import report as report_lib
from glf_jax.train import config as config_lib
from glf_jax.train import loop
from glf_jax.train import state as state_lib

EVAL_PARTS = {'eval': ('linear', 'knn', 'geometry', 'alignment'),
              'linear_probe': ('linear',),
              'knn': ('knn',)}


def _eval_data_config(config):
  data = config.eval.data
  if not data.name:
    return config.data
  merged = ml_collections.ConfigDict(config.data.to_dict())
  for key in data.keys():
    if data[key] not in ('', 0) or key == 'name':
      merged[key] = data[key]
  return merged


def _eval_sources(config):
  """``(data_config, train_source, test_source)`` of the evaluation data (``eval.*`` limits)."""
  e = config.eval
  data_config = _eval_data_config(config)
  train_source = _subset(make_source(data_config, e.train_split), e.max_train_examples)
  test_source = _subset(make_source(data_config, e.test_split), e.max_test_examples)
  return data_config, train_source, test_source


def _subset(source, limit: int):
  if not limit or limit >= len(source):
    return source
  # A fixed, class-mixed subset: evenly spaced rows (sources are not sorted randomly).
  rows = np.linspace(0, len(source) - 1, limit).astype(np.int64)

  class Subset:
    num_classes = source.num_classes
    image_shape = source.image_shape

    def __len__(self):
      return len(rows)

    def __getitem__(self, i):
      return source[int(rows[i])]
  return Subset()


def _alignment_uniformity(config, eval_graphdef, params, batch_stats, test_source):
  """Alignment / uniformity of ``h`` over two views of the first test images (SPEC §4)."""
  n = min(int(config.eval.alignment_examples), len(test_source))
  images = np.stack([test_source[i]['image'] for i in range(n)])
  key = jax.random.key(config.seed + 7)

  @jax.jit
  def two_view_features(p, s, images):
    v1, v2 = augment.two_views(key, images, config.augment)
    model = nnx.merge(eval_graphdef, p, s)
    return model(v1)['h'].astype(jnp.float32), model(v2)['h'].astype(jnp.float32)
  h1, h2 = two_view_features(params, batch_stats, images)
  return {f'alignment/{k}': float(v) for k, v in
          metrics.alignment_uniformity(np.asarray(h1), np.asarray(h2)).items()}


def evaluate_encoder(config, eval_graphdef, params, batch_stats, *, workdir: str, tag: str,
                     parts=EVAL_PARTS['eval']) -> dict[str, float]:
  """Linear probe, kNN, class geometry and alignment/uniformity of an encoder (flat dict)."""
  e = config.eval
  data_config, train_source, test_source = _eval_sources(config)
  view = config.augment.view1
  graphdef, state = nnx.split(nnx.merge(eval_graphdef, params, batch_stats))
  encode = features_lib.make_encode_fn(graphdef, state, image_size=view.image_size,
                                       mean=view.mean, std=view.std,
                                       crop_fraction=e.crop_fraction)
  cache_dir = os.path.join(workdir, 'features')
  fingerprint = f'{tag}|{data_config.to_json(sort_keys=True)}'
  start = time.perf_counter()
  train_x, train_y = features_lib.extract_features(
      encode, train_source, batch_size=e.batch_size,
      cache_path=os.path.join(cache_dir, f'{tag}_train.npz'), cache_key=fingerprint + '|train')
  test_x, test_y = features_lib.extract_features(
      encode, test_source, batch_size=e.batch_size,
      cache_path=os.path.join(cache_dir, f'{tag}_test.npz'), cache_key=fingerprint + '|test')
  logging.info('%s: features of %d + %d images in %.1f s', tag, len(train_y), len(test_y),
               time.perf_counter() - start)
  results = report_lib.representation_report(
      train_x, train_y, test_x, test_y, num_classes=int(train_source.num_classes),
      probe_config=e.probe, seed=config.seed,
      parts=[p for p in parts if p in report_lib.REPORT_PARTS])
  if 'alignment' in parts and e.alignment_examples > 0:
    results.update(_alignment_uniformity(config, eval_graphdef, params, batch_stats, test_source))
  return results


def _print_table(columns: dict[str, dict[str, float]], title: str) -> None:
  if jax.process_index() == 0:
    print(f'\n{title}\n' + report_lib.format_table(columns), flush=True)


def _write_summary(workdir: str, summary: dict) -> None:
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, 'summary.json')
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(summary, f, indent=2, default=float)
  os.replace(tmp, path)
  print(f'summary written to {path}', flush=True)


def _last_metrics(workdir: str) -> dict[str, Any]:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return {}
  last = {}
  with open(path, encoding='utf-8') as f:
    for line in f:
      if line.strip():
        last = json.loads(line)
  return last


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs ``config.mode`` (see the module docstring); returns the summary."""
  config_lib.validate(config)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  if config.mode == 'pretrain':
    return _pretrain(config, workdir)
  if config.mode == 'finetune':
    return _finetune(config, workdir)
  source_dir = config.eval.checkpoint_dir or workdir
  saved_config, eval_graphdef, params, batch_stats, step = loop.load_encoder(source_dir)
  # Evaluation settings come from this config; the encoder's (and its augment) from the run.
  saved_config.unlock()
  saved_config.eval = config.eval
  results = evaluate_encoder(saved_config, eval_graphdef, params, batch_stats, workdir=workdir,
                             tag=f'step{step}', parts=EVAL_PARTS[config.mode])
  _print_table({f'step {step}': results}, f'{config.mode} of {source_dir}')
  summary = {'mode': config.mode, 'checkpoint_dir': source_dir, 'step': step,
             'objective': saved_config.objective.name, 'pretrained': results}
  _write_summary(workdir, summary)
  return summary


def _pretrain(config, workdir):
  result = loop.pretrain(config, workdir)
  step = int(result.state['step'])
  summary = {
      'mode': 'pretrain', 'objective': config.objective.name, 'arch': config.model.arch,
      'dataset': config.data.name, 'status': 'interrupted' if result.interrupted else 'finished',
      'step': step, 'total_steps': result.total_steps,
      'epochs': step / result.steps_per_epoch, 'train_seconds': result.train_seconds,
      'images_per_second': result.images_per_second, 'skipped_steps': result.skipped_steps,
      'last_metrics': _last_metrics(workdir),
  }
  if result.interrupted or not config.train.eval_after:
    _write_summary(workdir, summary)
    return summary
  state = jax.device_get(result.state)
  columns = {}
  if config.eval.compare_random_init:
    # The same initial parameters the run started from (init is a function of config.seed).
    _, init_eval_graphdef, init_params, init_stats, _ = state_lib.init_encoder(config)
    columns['random init'] = evaluate_encoder(config, init_eval_graphdef, init_params, init_stats,
                                              workdir=workdir, tag='init')
    summary['random_init'] = columns['random init']
  columns['pretrained'] = evaluate_encoder(config, result.eval_graphdef, state['params'],
                                           state['batch_stats'], workdir=workdir,
                                           tag=f'step{step}')
  summary['pretrained'] = columns['pretrained']
  _print_table(columns, f'{config.objective.name} on {config.data.name}: {step} steps '
               f'({result.train_seconds:.0f} s, {result.images_per_second:.1f} img/s)')
  _write_summary(workdir, summary)
  return summary


def _finetune(config, workdir):
  from glf_jax.evaluate import finetune as finetune_lib  # pylint: disable=g-import-not-at-top
  source_dir = config.eval.checkpoint_dir or workdir
  saved_config, eval_graphdef, params, batch_stats, step = loop.load_encoder(source_dir)
  encoder = nnx.merge(eval_graphdef, params, batch_stats)
  data_config, train_source, test_source = _eval_sources(config)
  ft = ml_collections.ConfigDict(config.eval.finetune.to_dict())
  view = saved_config.augment.view1
  ft.image_size, ft.mean, ft.std = view.image_size, tuple(view.mean), tuple(view.std)
  results = finetune_lib.finetune(encoder.backbone, train_source, test_source,
                                  num_classes=int(train_source.num_classes), config=ft,
                                  seed=config.seed)
  results = {f'finetune/{k}': float(v) for k, v in results.items()}
  _print_table({f'step {step}': results}, f'transfer of {source_dir} to {data_config.name}')
  summary = {'mode': 'finetune', 'checkpoint_dir': source_dir, 'step': step,
             'dataset': data_config.name, 'pretrained': results}
  _write_summary(workdir, summary)
  return summary
