"""Pretraining throughput: images/s, ms/step, compile time and peak memory of the real train step.

    python benchmarks/train_throughput.py                      # ResNet-18 CIFAR: SimCLR, +ADC, BYOL
    python benchmarks/train_throughput.py --methods simsiam,mocov3,wmse,simsiam+adc --batch-sizes 128
    python benchmarks/train_throughput.py --batch-sizes 128,512 --steps 5 --json out.json
    python benchmarks/train_throughput.py --config configs/swav.py:cifar100,adc --batch-sizes 256
    python benchmarks/train_throughput.py --methods simclr+adc,simclr+adc:features --batch-sizes 128
    python benchmarks/train_throughput.py --quick              # tiny model, smoke run
    # what data.image_size buys (the views and the evaluation follow it):
    python benchmarks/train_throughput.py --methods simclr --arch resnet_tiny --width-multiplier 2 \
        --batch-sizes 256 --image-sizes 32,16 --steps 10

``<method>+adc:features`` runs ADC with ``prior.kind='features'``: a synthetic table of
``FEATURES_ROWS`` x ``FEATURES_DIM`` precomputed prior features (CIFAR-10's training set, CLIP
ViT-B/32's width), looked up on the device by each example's index, instead of the pixel prior.

The step is the one ``python -m glf_jax.main`` runs (``glf_jax.train.step``: two JAX views,
encoder, GLF objective, optimiser, online probe), on synthetic uint8 images of the dataset's size
(no data needed), over every local device. "images/s" counts source images (each gives two
views); "views/s" is twice that. Memory: the compiled step's buffers from XLA's buffer assignment
(``compiled.memory_analysis()``: temporaries + arguments + outputs), deterministic and per row,
and the device's ``peak_bytes_in_use`` where the backend reports it (GPU/TPU). (The process's
peak RSS would only grow over the rows of one run, so it is not reported.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from glf_jax import config as config_lib  # noqa: E402
from glf_jax import prior as prior_lib  # noqa: E402
from glf_jax.prior import features_file  # noqa: E402
from glf_jax.runtime import devices, xla_cpu  # noqa: E402
from glf_jax.data.source_base import ImageSource  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
from glf_jax.train.setup import build_training  # noqa: E402


def load_config(spec: str):
  path, _, arg = spec.partition(':')
  import importlib.util  # pylint: disable=g-import-not-at-top
  module_spec = importlib.util.spec_from_file_location('bench_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


FEATURES_ROWS, FEATURES_DIM = 50_000, 512


class _IndexOnlySource(ImageSource):
  """``FEATURES_ROWS`` examples that only have ids: what a prior-features file is checked against."""
  name, split = 'synthetic', 'train'

  def __len__(self):
    return FEATURES_ROWS


def build_step(config, batch_size: int):
  """The jitted step, state and prior state that ``glf_jax.main`` would run (glf_jax.train.setup)."""
  config.train.batch_size = batch_size
  config_lib.validate(config)
  training = build_training(config, steps_per_epoch=100,
                            num_classes=config.model.num_classes or 10)
  source = None
  if config.prior.kind == 'features':
    source = _IndexOnlySource()
    table = np.random.default_rng(0).standard_normal((FEATURES_ROWS, FEATURES_DIM), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
      config.prior.path = os.path.join(tmp, 'prior.safetensors')
      features_file.write(config.prior.path, table, source=source)
      prior_apply, prior_state = prior_lib.build_prior(config, training.objective, source)
  else:
    prior_apply, prior_state = prior_lib.build_prior(config, training.objective)
  return jax.jit(training.train_step(prior_apply), donate_argnums=0), training.state, prior_state


def step_memory_gib(compiled) -> float:
  """The step's buffers in XLA's buffer assignment: temporaries + arguments + outputs."""
  stats = compiled.memory_analysis()
  return (stats.temp_size_in_bytes + stats.argument_size_in_bytes
          + stats.output_size_in_bytes) / 2**30


def _format(value, spec: str) -> str:
  return 'n/a' if value is None else format(value, spec)


def step_gflop(compiled) -> float | None:
  """XLA's count of the step's floating-point operations (deterministic, unlike the timings)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return cost['flops'] / 1e9 if cost and 'flops' in cost else None


def device_peak_gib() -> float | None:
  stats = jax.local_devices()[0].memory_stats() or {}
  return stats['peak_bytes_in_use'] / 2**30 if 'peak_bytes_in_use' in stats else None


class Timed:
  """One (config, batch size): its compiled step, state and a fixed batch; ``run()`` times one step."""

  def __init__(self, config, batch_size: int, warmup: int):
    mesh = devices.make_mesh()
    train_step, state, prior_state = build_step(config, batch_size)
    self.state = jax.device_put(state, devices.replicated(mesh))
    self.prior_state = jax.device_put(prior_state, devices.replicated(mesh))
    self.image_size = config.data.image_size or config.augment.view1.image_size  # as decoded
    rng = np.random.default_rng(0)
    self.batch = devices.to_global_batch({
        'image': rng.integers(0, 256, (batch_size, self.image_size, self.image_size, 3),
                              dtype=np.uint8),
        'label': rng.integers(0, 10, (batch_size,), dtype=np.int32),
        'index': rng.integers(0, FEATURES_ROWS, (batch_size,), dtype=np.int32)}, mesh)
    start = time.perf_counter()
    self.compiled = train_step.lower(self.state, self.batch, self.prior_state).compile()
    self.compile_s = time.perf_counter() - start
    self.objective, self.arch, self.batch_size = config.objective.name, config.model.arch, batch_size
    if config.prior.kind == 'features' and 'adc' in config.objective.name:
      self.objective += ':features'
    self.dtype = config.model.dtype
    self.times = []
    for _ in range(warmup):
      self.run(record=False)

  def run(self, record: bool = True) -> None:
    start = time.perf_counter()
    self.state, self.metrics = self.compiled(self.state, self.batch, self.prior_state)
    jax.block_until_ready(self.state)
    if record:
      self.times.append(time.perf_counter() - start)

  def row(self) -> dict:
    ms = 1000 * statistics.median(self.times)
    return {'objective': self.objective, 'arch': self.arch, 'dtype': self.dtype,
            'batch_size': self.batch_size,
            'image_size': self.image_size, 'ms_per_step': ms,
            'images_per_s': self.batch_size / (ms / 1000),
            'views_per_s': 2 * self.batch_size / (ms / 1000), 'compile_s': self.compile_s,
            'step_memory_gib': step_memory_gib(self.compiled),
            'step_gflop': step_gflop(self.compiled),
            'device_peak_gib': device_peak_gib(), 'loss': float(self.metrics['loss']),
            'steps_timed': len(self.times), 'step_ms': [1000 * t for t in self.times]}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='', help='one config file[:arg] instead of --methods')
  parser.add_argument('--methods',
                      default='simclr,simclr+adc,simclr+adc:features,byol,simsiam,simsiam+adc,mocov3,wmse',
                      help='configs/<method>.py of each, "+adc" adds its adc argument, '
                      '":features" a precomputed-features prior')
  parser.add_argument('--dataset', default='cifar10', help='cifar10, cifar100 or imagenet100')
  parser.add_argument('--arch', default='resnet18', help='resnet18, resnet50, resnet_tiny, ...')
  parser.add_argument('--width-multiplier', type=int, default=None,
                      help="the backbone's width multiplier (default: the config's)")
  parser.add_argument('--image-sizes', default='',
                      help='data.image_size values to compare, e.g. 32,16 (default: the config\'s)')
  parser.add_argument('--batch-sizes', default='128,512')
  parser.add_argument('--optimizer', default='', help='override optim.name (e.g. sgd)')
  parser.add_argument('--dtypes', default='float32',
                      help='model compute dtypes to compare (float32,bfloat16); params stay fp32')
  parser.add_argument('--steps', type=int, default=5, help='timed rounds (interleaved)')
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--xla-cpu-flags', default='fast',
                      help="glf_jax.runtime.xla_cpu preset on CPU ('fast', as glf_jax.main uses; 'none')")
  parser.add_argument('--quick', action='store_true', help='tiny model and batch: smoke run')
  parser.add_argument('--json', default='benchmarks/results/train_throughput.json')
  args = parser.parse_args(argv)
  xla_cpu.configure(args.xla_cpu_flags)  # before the first computation initialises the backend

  configs = []
  if args.config:
    configs.append(load_config(args.config))
  else:
    for method in args.methods.split(','):
      method, _, prior_kind = method.partition(':')
      base, _, constraint = method.partition('+')
      arch_word = [args.arch] if args.arch in ('resnet18', 'resnet50') else []
      words = [args.dataset, *arch_word] + (['adc'] if constraint == 'adc' else [])
      configs.append(load_config(f'{ROOT / "configs" / base}.py:{",".join(words)}'))
      configs[-1].model.arch = args.arch  # any architecture, e.g. resnet_tiny
      if prior_kind:
        configs[-1].prior.kind = prior_kind
  batch_sizes = [int(b) for b in args.batch_sizes.split(',')]
  if args.quick:
    configs = [config_lib.tiny(c) for c in configs]
    batch_sizes, args.steps, args.warmup = [16], 2, 1
  timed = []
  image_sizes = [int(s) for s in args.image_sizes.split(',') if s] or [None]
  for config, dtype, batch_size, image_size in itertools.product(
      configs, args.dtypes.split(','), batch_sizes, image_sizes):
    if args.optimizer:
      config.optim.name = args.optimizer
    if args.width_multiplier:
      config.model.width_multiplier = args.width_multiplier
    if image_size:
      config.data.image_size = image_size  # the views and the evaluation transform follow
    config.model.dtype = dtype
    timed.append(Timed(config.copy_and_resolve_references(), batch_size, args.warmup))
    print(f'compiled {config.objective.name} {dtype} batch {batch_size} '
          f'{timed[-1].image_size} px ({timed[-1].compile_s:.1f} s)', flush=True)
  # Interleaved rounds (each configuration once per round): a shared, noisy machine slows all of
  # them alike, so their ratios (e.g. the cost of ADC) are fair even when absolute times drift.
  for round_index in range(args.steps):
    for t in timed:
      t.run()
    print(f'round {round_index + 1}/{args.steps}: ' + ', '.join(
        f'{t.objective}/{t.dtype}@{t.batch_size}/{t.image_size}px {1000 * t.times[-1]:.0f} ms'
        for t in timed),
          flush=True)
  rows = [t.row() for t in timed]

  print('\n| objective | arch | dtype | batch | px | ms/step | images/s | views/s | compile s '
        '| step GiB | GFLOP/step |')
  print('|---|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    print(f'| {r["objective"]} | {r["arch"]} | {r["dtype"]} | {r["batch_size"]} | '
          f'{r["image_size"]} | '
          f'{r["ms_per_step"]:.0f} | '
          f'{r["images_per_s"]:.1f} | {r["views_per_s"]:.1f} | {r["compile_s"]:.1f} | '
          f'{r["step_memory_gib"]:.2f} | {_format(r["step_gflop"], ".1f")} |')
  by_key = {(r['objective'], r['dtype'], r['batch_size']): r for r in rows
            if len(image_sizes) == 1}  # the ADC overhead: at one image size
  # ADC's cost from the rounds' paired ratios: within a round the two steps run back to back, so
  # the machine's drift (here up to ±15 % between rounds) largely cancels in their ratio.
  overheads = {}
  for (objective, dtype, batch), r in by_key.items():
    base_name = objective.split('+adc')[0]
    if base_name == objective or (base_name, dtype, batch) not in by_key:
      continue
    base = by_key[(base_name, dtype, batch)]
    ratios = [adc / plain - 1 for adc, plain in zip(r['step_ms'], base['step_ms'])]
    key = f'{objective}/{dtype}@{batch}'
    flops = (r['step_gflop'] / base['step_gflop'] - 1
             if r['step_gflop'] and base['step_gflop'] else None)
    overheads[key] = {'median': statistics.median(ratios), 'min': min(ratios),
                      'max': max(ratios), 'of_medians': r['ms_per_step'] / base['ms_per_step'] - 1,
                      'flops': flops}
    print(f'ADC overhead, {objective} over {base_name}, {dtype} batch {batch}: median of '
          f'{len(ratios)} paired rounds {100 * overheads[key]["median"]:+.1f}% (rounds '
          f'{100 * min(ratios):+.1f}% to {100 * max(ratios):+.1f}%; ratio of medians '
          f'{100 * overheads[key]["of_medians"]:+.1f}%); in XLA\'s flop count '
          f'{_format(flops and 100 * flops, "+.2f")}%')
  metadata = {'jax_version': jax.__version__, 'xla_cpu_flags': args.xla_cpu_flags,
              'backend': jax.default_backend(),
              'devices': [str(d) for d in jax.local_devices()], 'platform': platform.platform(),
              'cpu_count': os.cpu_count(), 'xla_flags': os.environ.get('XLA_FLAGS', '')}
  out = pathlib.Path(args.json)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({'metadata': metadata, 'rows': rows, 'adc_overhead': overheads},
                            indent=2))
  print(f'\nwrote {out}')


if __name__ == '__main__':
  main()
