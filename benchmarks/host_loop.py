"""Benchmark of the host's side of training: how many images per second one process can feed.

The real data path and the real training loop, with a step that costs about nothing on the
device, so what is measured is the host's work per step:

* ``loader``: ``next()`` of the grain loader (``glf_jax.data.make_loader``) over an image
  folder's decoded cache (CIFAR-like: ``--images`` random 32x32 JPEGs in ``--classes`` folders,
  made in a temporary directory and decoded once, not timed), global batch ``--batch-size``;
* ``loader + placement``: the same, each batch then placed on the devices as a global array
  (``glf_jax.runtime.devices.to_global_batch``), waited for;
* ``dispatch alone``: the null step below called on one batch placed beforehand: the jitted
  call's own cost, which grows with the number of arrays in the state;
* ``session loop``: ``glf_jax.run.session.Session.train`` (the loop of pretraining and cohorts:
  placement, dispatch, NaN guard, logs every ``--log-every`` steps, progress) driving a jitted step
  that takes the run's whole state (``--state resnet18``: the ResNet-18 SimCLR state, 188
  arrays; ``tiny``: two scalars) and the batch, and computes only the next step number and one
  pixel (the state is not donated or copied: on a CPU backend a copy of it would be device
  work).

Each row times ``--steps`` steps after ``--warmup`` steps (compilation, first pages), and reports
images/s, wall milliseconds per step, the main thread's CPU milliseconds per step and the share
of a 2 ms device step the host takes (a pod step of CIFAR at batch 512; under 10% keeps the chips
busy). On a CPU backend the "device" is this CPU too: placement is a memory copy here.

``--baseline-repo PATH`` also runs this script on another checkout of glf_jax (e.g. the commit
before a change: ``git worktree add /tmp/glf_base <commit>``) and prints both::

    python benchmarks/host_loop.py                              # this checkout
    python benchmarks/host_loop.py --baseline-repo /tmp/glf_base
    python benchmarks/host_loop.py --quick                      # smoke run: small, few steps

The Markdown table goes to stdout, the results to ``benchmarks/results/host_loop.json``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

# The checkout to measure: this one, or --baseline-repo's (run as a subprocess with this set).
_REPO = pathlib.Path(os.environ.get('GLF_JAX_BENCH_REPO')
                     or pathlib.Path(__file__).resolve().parent.parent)
if str(_REPO) not in sys.path:
  sys.path.insert(0, str(_REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from glf_jax.config import base_config  # noqa: E402
from glf_jax.data import make_loader, make_source  # noqa: E402
from glf_jax.run.session import Session  # noqa: E402
from glf_jax.runtime import devices  # noqa: E402

import report  # noqa: E402  # (benchmarks/report.py, beside this script)

DEVICE_STEP_MS = 2.0  # the device step the host must keep up with (a pod step, CIFAR batch 512)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--batch-size', type=int, default=512)
  p.add_argument('--images', type=int, default=10240, help='training images made (32x32 JPEGs)')
  p.add_argument('--classes', type=int, default=10)
  p.add_argument('--steps', type=int, default=300, help='timed steps per row')
  p.add_argument('--warmup', type=int, default=20, help='untimed steps first')
  p.add_argument('--log-every', type=int, default=50, help="the session's train.log_every")
  p.add_argument('--state', choices=('resnet18', 'tiny'), default='resnet18',
                 help="the state the null step passes through (default: ResNet-18 SimCLR's)")
  p.add_argument('--steps-per-call', default='1,8',
                 help='session-loop rows: train.steps_per_call values, comma-separated (the '
                      'baseline checkout runs one step per call)')
  p.add_argument('--baseline-repo', type=pathlib.Path, default=None,
                 help='also measure this checkout of glf_jax (e.g. the commit before a change)')
  p.add_argument('--label', default=None, help='name of this checkout in the table')
  p.add_argument('--workdir', type=pathlib.Path, default=None,
                 help='where the images, cache and run go (default: a temporary directory)')
  p.add_argument('--json', type=pathlib.Path,
                 default=pathlib.Path(__file__).resolve().parent / 'results' / 'host_loop.json')
  p.add_argument('--quick', action='store_true',
                 help='smoke run: 1,024 images, 20 steps, the tiny state')
  args = p.parse_args(argv)
  args.steps_per_call = [int(k) for k in str(args.steps_per_call).split(',')]
  if args.quick:
    args.images, args.steps, args.warmup = min(args.images, 1024), min(args.steps, 20), 5
    args.state = 'tiny'
  return args


def make_folder(root: pathlib.Path, images: int, classes: int) -> None:
  """``images`` random 32x32 JPEGs in ``root/train/<class>/`` (and a few in ``test``)."""
  rng = np.random.default_rng(0)
  for split, count in (('train', images), ('test', classes)):
    for i in range(count):
      folder = root / split / f'class{i % classes}'
      folder.mkdir(parents=True, exist_ok=True)
      Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(folder / f'{i}.jpg')


def run_config(args, root: pathlib.Path, cache: pathlib.Path):
  config = base_config('simclr', 'image_folder', 'resnet18')
  config.data.root, config.data.cache_dir, config.data.image_size = str(root), str(cache), 32
  config.model.num_classes = args.classes
  config.train.batch_size = args.batch_size
  config.train.log_every = args.log_every
  config.checkpoint.every_steps = 10**9  # one save, at the end (not timed)
  return config


def _row(stage, args, seconds, thread_seconds):
  per_step = seconds / args.steps * 1e3
  return {'stage': stage, 'steps': args.steps, 'seconds': round(seconds, 4),
          'images_per_s': round(args.steps * args.batch_size / seconds, 1),
          'ms_per_step': round(per_step, 4),
          'main_thread_cpu_ms_per_step': round(thread_seconds / args.steps * 1e3, 4),
          'share_of_device_step': round(per_step / DEVICE_STEP_MS, 4)}


def bench_loader(args, source, mesh, place: bool):
  loader = make_loader(source, seed=0, global_batch_size=args.batch_size)
  it = iter(loader)
  for _ in range(args.warmup):
    batch = next(it)
  t, c = time.perf_counter(), time.thread_time()
  for _ in range(args.steps):
    batch = next(it)
    if place:
      batch = devices.to_global_batch(batch, mesh)
  jax.block_until_ready(batch)
  return _row('loader + placement (to_global_batch)' if place else 'loader', args,
              time.perf_counter() - t, time.thread_time() - c)


def null_state(args, config, session):
  """The state the null step passes through: the run's real one (ResNet-18), or two scalars."""
  if args.state == 'tiny':
    return {'step': jnp.int32(0), 'nonfinite_in_a_row': jnp.int32(0)}
  from glf_jax.train.setup import build_training  # pylint: disable=g-import-not-at-top
  return build_training(config, steps_per_epoch=session.steps_per_epoch,
                        num_classes=session.num_classes).state


@functools.partial(jax.jit, keep_unused=True)
def _touch(state, batch):
  # Every state array goes in (keep_unused: as the real step's do), nothing is computed with
  # them: a copy of the state per step would be the device's work, not the host's.
  metrics = {'loss': batch['image'][0, 0, 0, 0].astype(jnp.float32),
             'nonfinite_in_a_row': state['nonfinite_in_a_row']}
  return state['step'] + 1, metrics


@functools.partial(jax.jit, keep_unused=True)
def _touch_many(state, batches):
  # The null step of several batches in one call (train.steps_per_call): its metrics stacked.
  count = len(batches)
  metrics = {'loss': jnp.stack([b['image'][0, 0, 0, 0].astype(jnp.float32) for b in batches]),
             'nonfinite_in_a_row': jnp.broadcast_to(state['nonfinite_in_a_row'], (count,))}
  return state['step'] + count, metrics


def null_steps(state, batches):
  """:func:`null_step` over a tuple of batches in one call (the session's ``steps_fn``)."""
  step, metrics = _touch_many(state, batches)
  return {**state, 'step': step}, metrics


def null_step(state, batch):
  """The step that costs nothing on the device: a jitted call taking the whole state and the
  batch, returning the next step number and the metrics (one pixel of the batch, the NaN guard's
  counter); the other state arrays are passed through unchanged."""
  step, metrics = _touch(state, batch)
  return {**state, 'step': step}, metrics


def bench_dispatch(args, config, session):
  """The null step alone, on one batch placed beforehand."""
  step = null_step
  loader = make_loader(session.source, seed=0, global_batch_size=args.batch_size)
  batch = devices.to_global_batch(next(iter(loader)), session.mesh)
  state = session.replicate(null_state(args, config, session))
  for _ in range(args.warmup):
    state, _ = step(state, batch)
  jax.block_until_ready(state)
  t, c = time.perf_counter(), time.thread_time()
  for _ in range(args.steps):
    state, _ = step(state, batch)
  jax.block_until_ready(state)
  return _row('dispatch alone (null step, one placed batch)', args, time.perf_counter() - t,
              time.thread_time() - c)


def bench_session(args, config, workdir, steps_per_call):
  """The session loop over the null step, ``steps_per_call`` steps a call (the warmup and timed
  steps rounded up to whole calls)."""
  config = config.copy_and_resolve_references()
  config.train.steps_per_call = steps_per_call
  session = Session(config, str(workdir))
  warmup = -(-args.warmup // steps_per_call) * steps_per_call
  steps = -(-args.steps // steps_per_call) * steps_per_call
  total = warmup + steps
  state = session.open(session.replicate(null_state(args, config, session)), total_steps=total)
  leaves = len(jax.tree.leaves(state))
  marks = {}

  def on_step(k):
    if k == warmup:
      marks['start'] = (time.perf_counter(), time.thread_time())

  def after_step(k, state_now):
    if k == total:
      jax.block_until_ready(state_now)
      marks['end'] = (time.perf_counter(), time.thread_time())

  several = {'steps_fn': null_steps} if steps_per_call > 1 else {}  # (a baseline has no steps_fn)
  session.train(state, null_step, on_step=on_step, after_step=after_step, **several)
  per_call = f', {steps_per_call} steps per call' if steps_per_call > 1 else ''
  row = _row(f'session loop (null step, {leaves} state arrays{per_call})',
             argparse.Namespace(**{**vars(args), 'steps': steps}),
             marks['end'][0] - marks['start'][0], marks['end'][1] - marks['start'][1])
  return {**row, 'state_arrays': leaves, 'steps_per_call': steps_per_call}


def measure(args) -> list[dict]:
  with tempfile.TemporaryDirectory(prefix='glf_host_loop_') as tmp:
    base = args.workdir or pathlib.Path(tmp)
    root = base / 'images'
    if not (root / 'train').is_dir():
      make_folder(root, args.images, args.classes)
    config = run_config(args, root, base / 'cache')
    source = make_source(config.data, 'train')
    mesh = devices.make_mesh()
    rows = [bench_loader(args, source, mesh, place=False),
            bench_loader(args, source, mesh, place=True),
            bench_dispatch(args, config, Session(config, str(base / 'dispatch')))]
    rows += [bench_session(args, config, base / f'run-{time.time_ns()}', k)
             for k in args.steps_per_call]
  return rows


def run_baseline(args) -> list[dict]:
  """This script on ``--baseline-repo``'s glf_jax, in a subprocess; its rows."""
  with tempfile.TemporaryDirectory(prefix='glf_host_loop_base_') as tmp:
    out = pathlib.Path(tmp) / 'baseline.json'
    command = [sys.executable, str(pathlib.Path(__file__).resolve()), '--json', str(out),
               '--label', args.baseline_repo.name, '--steps-per-call', '1']
    for name in ('batch_size', 'images', 'classes', 'steps', 'warmup', 'log_every', 'state'):
      command += [f'--{name.replace("_", "-")}', str(getattr(args, name))]
    env = {**os.environ, 'GLF_JAX_BENCH_REPO': str(args.baseline_repo.resolve())}
    subprocess.run(command, env=env, check=True, stdout=sys.stderr)
    return json.loads(out.read_text())['rows']


COLUMNS = (
    ('code', False, lambda r: r['code']),
    ('stage', False, lambda r: r['stage']),
    ('images/s', True, lambda r: f"{r['images_per_s']:,.0f}"),
    ('ms/step', True, lambda r: f"{r['ms_per_step']:.3f}"),
    ('main-thread CPU ms/step', True, lambda r: f"{r['main_thread_cpu_ms_per_step']:.3f}"),
    ('of a 2 ms step', True, lambda r: f"{100 * r['share_of_device_step']:.0f}%"),
)


def metadata(args) -> dict:
  return {
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'jax_version': jax.__version__, 'python': platform.python_version(),
      'platform': platform.platform(), 'cpu_count': os.cpu_count(),
      'backend': jax.default_backend(), 'device_count': jax.device_count(),
      'batch_size': args.batch_size, 'images': args.images, 'steps': args.steps,
      'warmup': args.warmup, 'state': args.state, 'quick': args.quick,
      'device_step_ms': DEVICE_STEP_MS,
      'baseline_repo': str(args.baseline_repo) if args.baseline_repo else None,
  }


def main(argv=None):
  args = parse_args(argv)
  meta = metadata(args)
  label = args.label or 'this checkout'
  print(f"# glf_jax host-loop benchmark: jax {meta['jax_version']}, {meta['cpu_count']} CPUs, "
        f"{meta['backend']}, batch {args.batch_size}, {meta['date']}"
        f"{' (quick)' if args.quick else ''}\n", flush=True)
  rows = []
  if args.baseline_repo is not None:
    rows += run_baseline(args)
  rows += [{'code': label, **row} for row in measure(args)]
  print(report.markdown_table(COLUMNS, rows))
  report.write_json(args.json, {'metadata': meta, 'rows': rows})


if __name__ == '__main__':
  main()
