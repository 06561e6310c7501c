"""Pretraining throughput: images/s, ms/step, compile time and peak memory of the real train step.

    python benchmarks/train_throughput.py                      # ResNet-18 CIFAR: SimCLR, +ADC, BYOL
    python benchmarks/train_throughput.py --batch-sizes 128,512 --steps 5 --json out.json
    python benchmarks/train_throughput.py --config configs/cifar10_swav.py:adc --batch-sizes 256
    python benchmarks/train_throughput.py --quick              # tiny model, smoke run

The step is the one ``python -m glf_jax.main`` runs (``glf_jax.train.step``: two JAX views,
encoder, GLF objective, optimiser, online probe), on synthetic uint8 images of the dataset's size
(no data needed), over every local device. "images/s" counts source images (each gives two
views); "views/s" is twice that. Peak memory: the device's ``peak_bytes_in_use`` where the
backend reports it (GPU/TPU), else the process's peak RSS (CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from glf_jax import parallel  # noqa: E402
from glf_jax.losses import build_objective  # noqa: E402
from glf_jax.train import config as config_lib  # noqa: E402
from glf_jax.train import optim, prior as prior_lib, state as state_lib, step as step_lib  # noqa: E402,E501


def load_config(spec: str):
  path, _, arg = spec.partition(':')
  import importlib.util  # pylint: disable=g-import-not-at-top
  module_spec = importlib.util.spec_from_file_location('bench_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def build_step(config, batch_size: int):
  schedule = optim.learning_rate_schedule(config.optim, global_batch_size=batch_size,
                                          total_steps=1000, steps_per_epoch=100)
  tx = optim.make_optimizer(config.optim, schedule)
  probe_tx = step_lib.make_probe_optimizer(config)
  train_graphdef, _, state = state_lib.init_train_state(config, tx=tx, probe_tx=probe_tx,
                                                        num_classes=10)
  uses_prior = 'adc' in config.objective.name.split('+')[1:] and config.objective.adc.use_prior
  prior_apply, prior_state = prior_lib.build_prior(config) if uses_prior else (None, {})
  train_step = step_lib.make_train_step(
      train_graphdef=train_graphdef, objective=build_objective(config.objective), tx=tx,
      probe_tx=probe_tx, config=config, learning_rate=schedule,
      ema_decay=optim.ema_decay_schedule(config.byol.ema_base, 1000), prior_apply=prior_apply,
      swav_freeze_steps=0)
  return jax.jit(train_step, donate_argnums=0), state, prior_state


def peak_memory_bytes() -> tuple[int, str]:
  stats = jax.local_devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use']), 'device peak'
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'process peak RSS'


def measure(config, batch_size: int, steps: int, warmup: int, image_size: int) -> dict:
  mesh = parallel.make_mesh()
  train_step, state, prior_state = build_step(config, batch_size)
  state = jax.device_put(state, parallel.replicated(mesh))
  prior_state = jax.device_put(prior_state, parallel.replicated(mesh))
  rng = np.random.default_rng(0)
  batch = parallel.to_global_batch({
      'image': rng.integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8),
      'label': rng.integers(0, 10, (batch_size,), dtype=np.int32)}, mesh)
  start = time.perf_counter()
  compiled = train_step.lower(state, batch, prior_state).compile()
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    state, metrics = compiled(state, batch, prior_state)
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batch, prior_state)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  ms = 1000 * statistics.median(times)
  peak, peak_kind = peak_memory_bytes()
  return {'objective': config.objective.name, 'arch': config.model.arch,
          'batch_size': batch_size, 'image_size': image_size, 'ms_per_step': ms,
          'images_per_s': batch_size / (ms / 1000), 'views_per_s': 2 * batch_size / (ms / 1000),
          'compile_s': compile_s, 'peak_memory_gib': peak / 2**30, 'peak_memory_kind': peak_kind,
          'loss': float(metrics['loss']), 'steps_timed': steps}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='', help='one config file[:arg] instead of --methods')
  parser.add_argument('--methods', default='simclr,simclr+adc,byol')
  parser.add_argument('--dataset', default='cifar10')
  parser.add_argument('--arch', default='resnet18')
  parser.add_argument('--batch-sizes', default='128,512')
  parser.add_argument('--optimizer', default='', help='override optim.name (e.g. sgd)')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--quick', action='store_true', help='tiny model and batch: smoke run')
  parser.add_argument('--json', default='benchmarks/results/train_throughput.json')
  args = parser.parse_args(argv)

  configs = []
  if args.config:
    configs.append(load_config(args.config))
  else:
    for method in args.methods.split(','):
      base, _, constraint = method.partition('+')
      configs.append(config_lib.paper_config(base, args.dataset, args.arch,
                                             adc=constraint == 'adc'))
  batch_sizes = [int(b) for b in args.batch_sizes.split(',')]
  if args.quick:
    configs = [config_lib.tiny(c) for c in configs]
    batch_sizes, args.steps, args.warmup = [16], 2, 1
  rows = []
  for config in configs:
    if args.optimizer:
      config.optim.name = args.optimizer
    image_size = config.augment.view1.image_size
    for batch_size in batch_sizes:
      row = measure(config, batch_size, args.steps, args.warmup, image_size)
      rows.append(row)
      print(f'{row["objective"]:>18s} {row["arch"]} batch {batch_size}: '
            f'{row["ms_per_step"]:.0f} ms/step, {row["images_per_s"]:.1f} img/s', flush=True)

  print('\n| objective | arch | batch | ms/step | images/s | views/s | compile s | peak GiB |')
  print('|---|---|---|---|---|---|---|---|')
  for r in rows:
    print(f'| {r["objective"]} | {r["arch"]} | {r["batch_size"]} | {r["ms_per_step"]:.0f} | '
          f'{r["images_per_s"]:.1f} | {r["views_per_s"]:.1f} | {r["compile_s"]:.1f} | '
          f'{r["peak_memory_gib"]:.2f} |')
  by_key = {(r['objective'], r['batch_size']): r for r in rows}
  overheads = {}
  for (objective, batch), r in by_key.items():
    if objective.endswith('+adc') and (objective[:-4], batch) in by_key:
      base = by_key[(objective[:-4], batch)]['ms_per_step']
      overheads[f'{objective}@{batch}'] = (r['ms_per_step'] - base) / base
      print(f'ADC overhead, {objective[:-4]} batch {batch}: {100 * overheads[f"{objective}@{batch}"]:+.1f}%')
  metadata = {'jax_version': jax.__version__, 'backend': jax.default_backend(),
              'devices': [str(d) for d in jax.local_devices()], 'platform': platform.platform(),
              'cpu_count': os.cpu_count(), 'xla_flags': os.environ.get('XLA_FLAGS', '')}
  out = pathlib.Path(args.json)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({'metadata': metadata, 'rows': rows, 'adc_overhead': overheads},
                            indent=2))
  print(f'\nwrote {out}')


if __name__ == '__main__':
  main()
