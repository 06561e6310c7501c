"""Benchmark of TFDS reads at 224 px: decoding every read vs the decode cache (data.decode_cache).

An ImageNet-like TFDS dataset is prepared locally (``imagenet2012``'s features, ArrayRecord, no
TensorFlow: ``tfds_source.prepare_from_examples``) from ``--images`` generated JPEGs of ImageNet's
typical sizes (smooth random pictures, about 500x375, quality 90), then read through
``glf_jax.data.TfdsSource`` at ``--image-size``. Stages, in images per second:

* ``decode every read``: ``source[i]`` without the cache (TFDS decodes the JPEG, then the bicubic
  resize and centre crop), one thread: images per core-second;
* ``cache build``: the one-off decode of the split into the cache, with ``--decode-workers``
  threads (default: the CPU count), and the same per core;
* ``cached read_batch``: ``source.read_batch(rows)`` of ``--batch-size`` random rows from the
  built cache, one thread;
* ``cached loader``: the grain loader (``make_loader``) over the cached source, one read thread.

Run from anywhere::

    python benchmarks/tfds_decode_cache.py            # 2,000 images at 224 px
    python benchmarks/tfds_decode_cache.py --quick    # smoke run: 64 images

The Markdown table goes to stdout, the results to ``benchmarks/results/tfds_decode_cache.json``.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import pathlib
import platform
import sys
import tempfile
import time

_REPO = pathlib.Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
  sys.path.insert(0, str(_REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from glf_jax.data import make_loader  # noqa: E402
from glf_jax.data import tfds_source  # noqa: E402

import report  # noqa: E402  # (benchmarks/report.py, beside this script)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--images', type=int, default=2000, help='training images made')
  p.add_argument('--image-size', type=int, default=224)
  p.add_argument('--batch-size', type=int, default=256)
  p.add_argument('--decode-workers', type=int, default=None,
                 help='cache-build threads (default: the CPU count)')
  p.add_argument('--workdir', type=pathlib.Path, default=None,
                 help='where the dataset and cache go (default: a temporary directory)')
  p.add_argument('--json', type=pathlib.Path, default=_REPO / 'benchmarks' / 'results' /
                 'tfds_decode_cache.json')
  p.add_argument('--quick', action='store_true', help='smoke run: 64 images, batch 16')
  args = p.parse_args(argv)
  if args.quick:
    args.images, args.batch_size = min(args.images, 64), min(args.batch_size, 16)
  args.decode_workers = args.decode_workers or os.cpu_count() or 1
  return args


def picture(rng: np.random.Generator) -> bytes:
  """A JPEG of a typical ImageNet size: smooth random colours (compressing like a photo)."""
  width, height = int(rng.integers(400, 600)), int(rng.integers(300, 450))
  coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8))
  image = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.int16)
  image = np.clip(image + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='JPEG', quality=90)
  return buffer.getvalue()


def prepare(data_dir: pathlib.Path, images: int) -> float:
  """The local ``imagenet2012`` (train split); returns the mean JPEG size in bytes."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  names = tfds.builder('imagenet2012', data_dir=os.fspath(data_dir)).info.features['label'].names
  features = tfds.features.FeaturesDict({
      'file_name': tfds.features.Text(),
      'image': tfds.features.Image(encoding_format='jpeg'),
      'label': tfds.features.ClassLabel(names=names),
  })
  rng = np.random.default_rng(0)
  examples = [{'file_name': f'{i}.JPEG', 'label': i % 1000, 'image': picture(rng)}
              for i in range(images)]
  tfds_source.prepare_from_examples('imagenet2012', data_dir, features, {'train': examples})
  return float(np.mean([len(e['image']) for e in examples]))


def _row(stage, images, seconds, cores=1):
  rate = images / seconds
  return {'stage': stage, 'images': int(images), 'seconds': round(seconds, 4),
          'images_per_s': round(rate, 1), 'cores': cores,
          'images_per_core_s': round(rate / cores, 1)}


def measure(args, base: pathlib.Path) -> tuple[list[dict], float]:
  data_dir, cache = base / 'tensorflow_datasets', base / 'cache'
  jpeg_bytes = prepare(data_dir, args.images)
  common = dict(data_dir=os.fspath(data_dir), image_size=args.image_size, cache_dir=cache)
  plain = tfds_source.TfdsSource('imagenet2012', 'train', **common)
  count = min(len(plain), max(args.batch_size, 200))
  plain[0]  # pylint: disable=pointless-statement  # (first read: opens the files)
  t = time.perf_counter()
  for i in range(count):
    plain[i]  # pylint: disable=pointless-statement
  rows = [_row(f'decode every read ({args.image_size} px)', count, time.perf_counter() - t)]

  t = time.perf_counter()
  cached = tfds_source.TfdsSource('imagenet2012', 'train', decode_cache=True,
                                  decode_workers=args.decode_workers, **common)
  assert cached.cache_built
  rows.append(_row(f'cache build ({args.decode_workers} threads)', len(cached),
                   time.perf_counter() - t, cores=min(args.decode_workers, os.cpu_count() or 1)))

  rng = np.random.default_rng(1)
  batches = [rng.choice(len(cached), args.batch_size, replace=False) for _ in range(20)]
  cached.read_batch(batches[0])
  t = time.perf_counter()
  for rows_of_batch in batches:
    cached.read_batch(rows_of_batch)
  rows.append(_row(f'cached read_batch (batch {args.batch_size})', 20 * args.batch_size,
                   time.perf_counter() - t))

  loader = make_loader(cached, seed=0, global_batch_size=args.batch_size, process_index=0,
                       process_count=1, read_threads=1)
  it = iter(loader)
  next(it)
  steps = max(20, 3 * loader.steps_per_epoch)
  t = time.perf_counter()
  for _ in range(steps):
    next(it)
  rows.append(_row(f'cached loader (batch {args.batch_size}, 1 read thread)',
                   steps * args.batch_size, time.perf_counter() - t))
  return rows, jpeg_bytes


COLUMNS = (
    ('stage', False, lambda r: r['stage']),
    ('images', True, lambda r: f"{r['images']:,}"),
    ('seconds', True, lambda r: f"{r['seconds']:.3f}"),
    ('images/s', True, lambda r: f"{r['images_per_s']:,.0f}"),
    ('images per core-second', True, lambda r: f"{r['images_per_core_s']:,.0f}"),
)


def main(argv=None):
  args = parse_args(argv)
  meta = {'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
          'python': platform.python_version(), 'platform': platform.platform(),
          'cpu_count': os.cpu_count(), 'images': args.images, 'image_size': args.image_size,
          'batch_size': args.batch_size, 'decode_workers': args.decode_workers,
          'quick': args.quick}
  print(f"# glf_jax TFDS decode-cache benchmark: {args.images} images at {args.image_size} px, "
        f"{meta['cpu_count']} CPUs, {meta['date']}{' (quick)' if args.quick else ''}\n",
        flush=True)
  with tempfile.TemporaryDirectory(prefix='glf_tfds_cache_') as tmp:
    rows, jpeg_bytes = measure(args, args.workdir or pathlib.Path(tmp))
  meta['mean_jpeg_bytes'] = round(jpeg_bytes)
  print(report.markdown_table(COLUMNS, rows))
  print(f'\n(mean JPEG: {jpeg_bytes / 1024:.0f} KiB; the cache holds '
        f'{args.image_size ** 2 * 3 / 1024:.0f} KiB an image)')
  report.write_json(args.json, {'metadata': meta, 'rows': rows})


if __name__ == '__main__':
  main()
