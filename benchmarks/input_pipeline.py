"""Benchmark of the input pipeline on CIFAR-10 JPEGs: cache build, loader reads, augmentation.

Stages, each reported in images per second:

* ``cache build``: the one-off decode of every JPEG of a split into the image-folder cache
  (``glf_jax.data.sources.ImageFolderSource``; the cache is deleted first, so this is a real
  build). The archive is extracted once into ``--workdir`` (not timed; reused by later runs).
* ``cache reopen``: opening the built cache again (listing + fingerprint check, no decoding).
* ``loader``: batches of ``--batch-size`` from the cache through the grain loader
  (``glf_jax.data.pipeline.make_loader``: batched reads in grain's shuffle order), ``--steps`` batches after two
  warm-up batches; several epochs of CIFAR-10's training set at the defaults. Target: >= 2,000
  images/s on a 2-core CPU.
* ``two_views``: ``jax.jit(two_views)`` with the SimCLR CIFAR recipe on one batch of
  ``--batch-size`` uint8 images (both views; images/s counts source images), median of
  ``--repeats`` calls after a warm-up call; skipped if ``glf_jax.data.augment`` is missing.

Run from anywhere::

    python benchmarks/input_pipeline.py --archive cifar10-jpeg.tar.gz           # all 60,000
    python benchmarks/input_pipeline.py --archive cifar10-jpeg.tar.gz --quick   # 100 + 20 per class

The archive is a ``.tar.gz`` of ``cifar10/{train,test}/<class>/*.jpg`` (README, "CIFAR-10 as
JPEG folders", says how to make one from the official release).

The Markdown table goes to stdout, the results to ``benchmarks/results/input_pipeline.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import statistics
import sys
import tarfile
import time

_REPO = pathlib.Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
  sys.path.insert(0, str(_REPO))

import grain  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from glf_jax.data import pipeline  # noqa: E402
from glf_jax.data import sources  # noqa: E402

TARGET_LOADER_IMAGES_PER_S = 2000
# The archive (cifar10/{train,test}/<class>/*.jpg): --archive, or the variable the tests read.
_ARCHIVE_VARIABLE = 'GLF_JAX_CIFAR10_ARCHIVE'


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--archive', type=pathlib.Path, default=os.environ.get(_ARCHIVE_VARIABLE),
                 help='CIFAR-10 JPEG archive, a .tar.gz of cifar10/{train,test}/<class>/*.jpg '
                      f'(default ${_ARCHIVE_VARIABLE})')
  p.add_argument('--workdir', type=pathlib.Path, default=pathlib.Path('/tmp/glf_cifar10'),
                 help='where the images are extracted and cached (default /tmp/glf_cifar10)')
  p.add_argument('--batch-size', type=int, default=512)
  p.add_argument('--steps', type=int, default=300,
                 help='timed loader batches (default 300: ~3 epochs of 50,000 at 512)')
  p.add_argument('--repeats', type=int, default=10, help='timed two_views calls (median)')
  p.add_argument('--decode-workers', type=int, default=None,
                 help='cache-build threads (default: the CPU count)')
  p.add_argument('--json', type=pathlib.Path,
                 default=_REPO / 'benchmarks' / 'results' / 'input_pipeline.json')
  p.add_argument('--quick', action='store_true',
                 help='smoke run: 100 train / 20 test images per class, 20 steps, 3 repeats')
  args = p.parse_args(argv)
  if args.archive is None:
    p.error(f'no CIFAR-10 archive: give --archive PATH or set ${_ARCHIVE_VARIABLE}')
  if args.quick:
    args.steps, args.repeats = min(args.steps, 20), min(args.repeats, 3)
  return args


def extract(archive: pathlib.Path, target: pathlib.Path, per_class: dict[str, int] | None):
  """Extracts the archive (or ``per_class[split]`` images per class) once; returns the root."""
  root = target / 'cifar10'
  done = target / '.extracted'
  if done.is_file():
    return root
  shutil.rmtree(target, ignore_errors=True)
  target.mkdir(parents=True)
  counts: dict[tuple[str, str], int] = {}
  t = time.perf_counter()
  with tarfile.open(archive, 'r|gz') as stream:
    for member in stream:
      parts = pathlib.PurePosixPath(member.name).parts  # cifar10/<split>/<class>/NNNN.jpg
      if not member.isfile() or len(parts) != 4:
        continue
      key = (parts[1], parts[2])
      if per_class is not None and counts.get(key, 0) >= per_class.get(parts[1], 0):
        continue
      counts[key] = counts.get(key, 0) + 1
      path = target.joinpath(*parts)
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(stream.extractfile(member).read())
  done.write_text(json.dumps({'images': sum(counts.values())}))
  print(f'extracted {sum(counts.values())} images to {root} in {time.perf_counter() - t:.1f} s',
        file=sys.stderr)
  return root


def bench_cache(root, cache_dir, decode_workers):
  rows = []
  shutil.rmtree(cache_dir, ignore_errors=True)
  built = {}
  for split in ('train', 'test'):
    t = time.perf_counter()
    source = sources.ImageFolderSource(root, split, cache_dir=cache_dir,
                                       decode_workers=decode_workers)
    seconds = time.perf_counter() - t
    assert source.cache_built
    built[split] = source
    rows.append(_row(f'cache build ({split})', len(source), seconds))
  t = time.perf_counter()
  reopened = sources.ImageFolderSource(root, 'train', cache_dir=cache_dir)
  assert not reopened.cache_built
  rows.append(_row('cache reopen (train)', len(reopened), time.perf_counter() - t))
  return built['train'], rows


def bench_loader(source, batch_size, steps):
  loader = pipeline.make_loader(source, seed=0, global_batch_size=batch_size,
                                process_index=0, process_count=1)
  it = iter(loader)
  for _ in range(2):  # warm-up: thread pool start, first pages
    next(it)
  t = time.perf_counter()
  checksum = 0
  for _ in range(steps):
    batch = next(it)
    checksum += int(batch['label'][0])  # touch the batch
  seconds = time.perf_counter() - t
  row = _row(f'loader (batch {batch_size}, {steps} steps, '
             f'{steps / loader.steps_per_epoch:.1f} epochs)', steps * batch_size, seconds)
  row['meets_target'] = row['images_per_s'] >= TARGET_LOADER_IMAGES_PER_S
  return row


def bench_two_views(source, batch_size, repeats):
  try:
    from glf_jax.data.augment import simclr_config, two_views  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f'two_views skipped: {e}', file=sys.stderr)
    return None
  images = np.stack([source[i]['image'] for i in range(batch_size)])
  config = simclr_config(32, dataset='cifar10')
  fn = jax.jit(lambda key, x: two_views(key, x, config))
  key = jax.random.key(0)
  t = time.perf_counter()
  jax.block_until_ready(fn(key, images))
  compile_s = time.perf_counter() - t
  times = []
  for i in range(repeats):
    sub = jax.random.fold_in(key, i + 1)
    t = time.perf_counter()
    jax.block_until_ready(fn(sub, images))
    times.append(time.perf_counter() - t)
  row = _row(f'jit(two_views) SimCLR CIFAR (batch {batch_size}, median of {repeats})',
             batch_size, statistics.median(times))
  row['first_call_s'] = round(compile_s, 3)
  return row


def _row(stage, images, seconds):
  return {'stage': stage, 'images': int(images), 'seconds': round(seconds, 4),
          'images_per_s': round(images / seconds, 1) if seconds > 0 else float('inf')}


def markdown_table(rows):
  lines = ['| stage | images | seconds | images/s |', '|---|---:|---:|---:|']
  for r in rows:
    lines.append(f"| {r['stage']} | {r['images']:,} | {r['seconds']:.3f} | "
                 f"{r['images_per_s']:,.0f} |")
  return '\n'.join(lines)


def metadata(args):
  return {
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'jax_version': jax.__version__,
      'grain_version': getattr(grain, '__version__', 'unknown'),
      'numpy_version': np.__version__,
      'python': platform.python_version(),
      'platform': platform.platform(),
      'cpu_count': os.cpu_count(),
      'backend': jax.default_backend(),
      'device_count': jax.device_count(),
      'quick': args.quick,
      'batch_size': args.batch_size,
      'target_loader_images_per_s': TARGET_LOADER_IMAGES_PER_S,
  }


def main(argv=None):
  args = parse_args(argv)
  meta = metadata(args)
  print(f"# glf_jax input pipeline benchmark: jax {meta['jax_version']}, "
        f"{meta['cpu_count']} CPUs, {meta['date']}{' (quick)' if args.quick else ''}\n",
        flush=True)
  mode = 'quick' if args.quick else 'full'
  root = extract(args.archive, args.workdir / mode,
                 {'train': 100, 'test': 20} if args.quick else None)
  train, rows = bench_cache(root, args.workdir / f'cache-{mode}', args.decode_workers)
  batch_size = min(args.batch_size, len(train))
  rows.append(bench_loader(train, batch_size, args.steps))
  augment_row = bench_two_views(train, batch_size, args.repeats)
  if augment_row is not None:
    rows.append(augment_row)
  meta['two_views_measured'] = augment_row is not None
  print(markdown_table(rows))
  loader_row = next(r for r in rows if r['stage'].startswith('loader'))
  print(f"\nloader target >= {TARGET_LOADER_IMAGES_PER_S:,} images/s: "
        f"{'met' if loader_row['meets_target'] else 'NOT met'}")
  args.json.parent.mkdir(parents=True, exist_ok=True)
  with open(args.json, 'w', encoding='utf-8') as f:
    json.dump({'metadata': meta, 'rows': rows}, f, indent=2)
  print(f'Wrote {args.json}', file=sys.stderr)


if __name__ == '__main__':
  main()
