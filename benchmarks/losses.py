"""Benchmark of the GLF losses: forward+backward time, compile time and peak memory.

For every loss and batch size ``M = 2N`` (two views of ``N`` rows, ``D`` features, float32) this
measures ``jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))`` — the gradient w.r.t. both views:

* ``fwd+bwd ms``: median wall time of ``--repeats`` calls (``--repeats-large`` at
  ``M >= --large-from``) after one warm-up call, each waited on with ``block_until_ready``;
* ``compile s``: wall time of ``jit(f).lower(*args).compile()`` (the persistent compilation cache
  is switched off, so this is a real compile);
* ``peak temp MiB`` / ``peak total MiB``: XLA's static buffer assignment of the compiled program
  (``compiled.memory_analysis()``): the temporaries, and temporaries + arguments + outputs. It is
  deterministic and says whether the ``M x M`` buffers of the dense form would fit.

The losses with a ``block_size`` argument run in both forms: ``dense`` (``block_size=None``) and
``blockwise`` (``--block-size`` anchors per block). At ``--large`` (default 32768) only the
blockwise form runs; the dense form there is compiled for its memory analysis but never executed.

Run from anywhere::

    python benchmarks/losses.py                      # full run, table on stdout, JSON to
                                                     # benchmarks/results/losses.json
    python benchmarks/losses.py --quick              # smoke run, well under a minute
    python benchmarks/losses.py --losses nt_xent,adc --sizes 1024 --large 0
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time
import traceback

_REPO = pathlib.Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
  sys.path.insert(0, str(_REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import numpy as np  # noqa: E402

import glf_jax  # noqa: E402
import glf_jax.losses as L  # noqa: E402

# Compile times must be real compiles, not persistent-cache hits.
jax.config.update('jax_enable_compilation_cache', False)

MIB = 1024.0 * 1024.0
NUM_PROTOTYPES = 3000   # SwAV prototypes K
NUM_CLASSES = 10        # labels for nscl / supcon: ints in [0, 10)
PRIOR_DIM = 64          # prior features for lpm / adc: [N, 64]

# name -> (has block_size, builder). A builder takes (n, d, rng) and returns
# (fn(z1, z2, *extra, block_size) -> loss scalar, z1, z2, extra args).
# The gradient is taken w.r.t. the first two arguments only.


def _normal(rng, *shape):
  return jnp.asarray(rng.standard_normal(shape, dtype=np.float32))


def _views(n, d, rng):
  return _normal(rng, n, d), _normal(rng, n, d)


def _labels(n, rng):
  return jnp.asarray(rng.integers(0, NUM_CLASSES, size=n, dtype=np.int32))


def _build_nt_xent(n, d, rng):
  return (lambda z1, z2, bs: L.nt_xent(z1, z2, block_size=bs)[0]), _views(n, d, rng), ()


def _build_balanced(n, d, rng):
  return ((lambda z1, z2, bs: L.balanced_contrastive(z1, z2, block_size=bs)[0]),
          _views(n, d, rng), ())


def _build_nscl(n, d, rng):
  return ((lambda z1, z2, y, bs: L.nscl(z1, z2, y, block_size=bs)[0]), _views(n, d, rng),
          (_labels(n, rng),))


def _build_supcon(n, d, rng):
  return ((lambda z1, z2, y, bs: L.supcon(z1, z2, y, block_size=bs)[0]), _views(n, d, rng),
          (_labels(n, rng),))


def _build_byol(n, d, rng):
  # Gradient w.r.t. the online predictions p1, p2; the targets t1, t2 are extra arguments.
  return ((lambda p1, p2, t1, t2, bs: L.byol(p1, p2, t1, t2)[0]), _views(n, d, rng),
          _views(n, d, rng))


def _build_barlow_twins(n, d, rng):
  return (lambda z1, z2, bs: L.barlow_twins(z1, z2)[0]), _views(n, d, rng), ()


def _build_swav(n, d, rng):
  c = _normal(rng, NUM_PROTOTYPES, d)
  c = c / jnp.linalg.norm(c, axis=-1, keepdims=True)
  return (lambda z1, z2, c, bs: L.swav(z1, z2, c)[0]), _views(n, d, rng), (c,)


def _build_dcm(n, d, rng):
  return (lambda z1, z2, bs: L.dcm(z1, z2, block_size=bs)[0]), _views(n, d, rng), ()


def _build_lpm(n, d, rng):
  return ((lambda z1, z2, r1, r2, bs: L.lpm(z1, z2, r1, r2, block_size=bs)[0]),
          _views(n, d, rng), (_normal(rng, n, PRIOR_DIM), _normal(rng, n, PRIOR_DIM)))


def _build_adc(n, d, rng):
  return ((lambda z1, z2, r1, r2, bs: L.adc(z1, z2, r1, r2, block_size=bs)[0]),
          _views(n, d, rng), (_normal(rng, n, PRIOR_DIM), _normal(rng, n, PRIOR_DIM)))


LOSSES = {
    'nt_xent': (True, _build_nt_xent),
    'balanced_contrastive': (True, _build_balanced),
    'nscl': (True, _build_nscl),
    'supcon': (True, _build_supcon),
    'byol': (False, _build_byol),
    'barlow_twins': (False, _build_barlow_twins),
    'swav': (False, _build_swav),
    'dcm': (True, _build_dcm),
    'lpm': (True, _build_lpm),
    'adc': (True, _build_adc),
}

QUICK = {'sizes': [64, 128], 'large': 0, 'repeats': 1, 'repeats_large': 1, 'block_size': 32}
# At M >= 8192 one call takes seconds (and ~100 s for adc/lpm blockwise at M = 32768 on 2 CPU
# cores), so the large sizes are timed with fewer calls.
FULL = {'sizes': [512, 2048, 8192], 'large': 32768, 'repeats': 5, 'repeats_large': 2,
        'block_size': 256}


def _int_list(text):
  try:
    return [int(x) for x in text.split(',') if x.strip()]
  except ValueError as err:
    raise argparse.ArgumentTypeError(f'expected a comma list of ints, got {text!r}') from err


def _loss_list(text):
  names = [x.strip() for x in text.split(',') if x.strip()]
  unknown = [x for x in names if x not in LOSSES]
  if unknown:
    raise argparse.ArgumentTypeError(f'unknown losses {unknown}; choose from {list(LOSSES)}')
  return names


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--sizes', type=_int_list, default=None,
                 help='batch sizes M = 2N, comma list (default 512,2048,8192; quick: 64,128)')
  p.add_argument('--large', type=int, default=None,
                 help='extra M run blockwise only, dense compiled for memory analysis but not '
                      'executed (default 32768; 0 skips; quick: 0)')
  p.add_argument('--dim', type=int, default=128, help='feature dimension D (default 128)')
  p.add_argument('--block-size', type=int, default=None,
                 help='anchors per block of the blockwise form (default 256; quick: 32)')
  p.add_argument('--losses', type=_loss_list, default=list(LOSSES),
                 help=f'comma list (default all: {",".join(LOSSES)})')
  p.add_argument('--repeats', type=int, default=None,
                 help='timed calls after the warm-up; the median is reported (default 5; quick: 1)')
  p.add_argument('--repeats-large', type=int, default=None,
                 help='timed calls at M >= --large-from (default 2; quick: 1)')
  p.add_argument('--large-from', type=int, default=8192,
                 help='M from which --repeats-large applies (default 8192)')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--json', type=pathlib.Path, default=_REPO / 'benchmarks' / 'results' /
                 'losses.json', help='output JSON (default benchmarks/results/losses.json)')
  p.add_argument('--quick', action='store_true',
                 help='smoke run: sizes 64,128, large 0, repeats 1, block size 32 (explicit '
                      'options still win)')
  args = p.parse_args(argv)
  defaults = QUICK if args.quick else FULL
  for key, value in defaults.items():
    if getattr(args, key) is None:
      setattr(args, key, value)
  if args.repeats < 1:
    p.error('--repeats must be >= 1')
  if args.repeats_large < 1:
    p.error('--repeats-large must be >= 1')
  if args.block_size < 1:
    p.error('--block-size must be >= 1')
  for m in args.sizes + ([args.large] if args.large else []):
    if m < 4 or m % 2:
      p.error(f'sizes must be even and >= 4 (M = 2N), got {m}')
  return args


def _memory(compiled):
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  # some backends do not implement it
    stats = None
  if stats is None:
    return {'peak_temp_mib': None, 'peak_total_mib': None, 'argument_mib': None,
            'output_mib': None}
  temp = stats.temp_size_in_bytes
  arg = stats.argument_size_in_bytes
  out = stats.output_size_in_bytes
  return {'peak_temp_mib': temp / MIB, 'peak_total_mib': (temp + arg + out) / MIB,
          'argument_mib': arg / MIB, 'output_mib': out / MIB}


def bench_one(name, m, dim, block_size, repeats, seed, *, execute=True):
  """One row: compiles (and unless ``execute=False`` runs) ``value_and_grad`` of a loss."""
  _, builder = LOSSES[name]
  n = m // 2
  rng = np.random.default_rng(seed)
  fn, (z1, z2), extra = builder(n, dim, rng)
  args = (z1, z2) + tuple(extra)

  def loss(*a):
    return fn(*a, block_size)

  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  row = {'loss': name, 'form': 'dense' if block_size is None else 'blockwise', 'M': m, 'N': n,
         'D': dim, 'block_size': block_size, 'executed': False, 'repeats': 0,
         'fwd_bwd_ms': None, 'fwd_bwd_ms_all': [], 'compile_s': None, 'loss_value': None,
         'peak_temp_mib': None, 'peak_total_mib': None, 'argument_mib': None,
         'output_mib': None, 'note': ''}
  if block_size is not None and block_size >= m:
    row['note'] = 'block_size >= M: map_rows runs the dense form'
  try:
    t0 = time.perf_counter()
    compiled = step.lower(*args).compile()
    row['compile_s'] = time.perf_counter() - t0
  except Exception as err:  # pylint: disable=broad-except
    row['note'] = f'compile failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}'
    return row
  row.update(_memory(compiled))
  if not execute:
    row['note'] = 'not run (compiled for memory analysis only)'
    return row
  value, grads = compiled(*args)  # warm-up
  jax.block_until_ready((value, grads))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = compiled(*args)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - t0) * 1e3)
  value = float(out[0])
  finite = math.isfinite(value) and all(bool(jnp.all(jnp.isfinite(g))) for g in out[1])
  row.update(executed=True, repeats=repeats, fwd_bwd_ms=statistics.median(times),
             fwd_bwd_ms_all=times, loss_value=value if math.isfinite(value) else repr(value))
  if not finite:
    row['note'] = (row['note'] + '; ' if row['note'] else '') + 'NON-FINITE loss or gradient'
  return row


def plan(args):
  """The (loss, M, block_size, execute) runs, in order."""
  runs = []
  for name in args.losses:
    has_blocks, _ = LOSSES[name]
    for m in args.sizes:
      runs.append((name, m, None, True))
      if has_blocks:
        runs.append((name, m, args.block_size, True))
    if args.large and has_blocks:
      runs.append((name, args.large, None, False))
      runs.append((name, args.large, args.block_size, True))
  return runs


def _fmt(x, spec):
  return 'not run' if x is None else format(x, spec)


def markdown_table(rows):
  lines = ['| loss | form | M | fwd+bwd ms | compile s | peak temp MiB | peak total MiB |',
           '|---|---|---:|---:|---:|---:|---:|']
  for r in rows:
    lines.append(f"| {r['loss']} | {r['form']} | {r['M']} | {_fmt(r['fwd_bwd_ms'], '.2f')} | "
                 f"{_fmt(r['compile_s'], '.2f')} | {_fmt(r['peak_temp_mib'], '.1f')} | "
                 f"{_fmt(r['peak_total_mib'], '.1f')} |")
  return '\n'.join(lines)


def metadata(args):
  dev = jax.devices()[0]
  return {
      'jax_version': jax.__version__,
      'jaxlib_version': jaxlib.__version__,
      'glf_jax_version': glf_jax.__version__,
      'backend': jax.default_backend(),
      'device_kind': dev.device_kind,
      'device_count': jax.device_count(),
      'cpu_count': os.cpu_count(),
      'platform': platform.platform(),
      'python': platform.python_version(),
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'dtype': 'float32',
      'args': {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
      'memory': 'XLA compiled.memory_analysis(): peak_temp = temp_size_in_bytes, peak_total = '
                'temp + argument + output sizes',
      'timing': 'median of `repeats` calls of the compiled jit(value_and_grad) after one warm-up',
  }


def main(argv=None):
  args = parse_args(argv)
  runs = plan(args)
  meta = metadata(args)
  print(f"# glf_jax loss benchmark: jax {meta['jax_version']}, backend {meta['backend']} "
        f"({meta['device_kind']}), {meta['cpu_count']} CPUs, D={args.dim}, float32, "
        f"block_size={args.block_size}, repeats {args.repeats} ({args.repeats_large} at "
        f"M >= {args.large_from}) after 1 warm-up, {len(runs)} runs", flush=True)
  rows = []
  failed = False
  t_start = time.perf_counter()
  for i, (name, m, bs, execute) in enumerate(runs):
    repeats = args.repeats
    if m >= args.large_from:
      repeats = args.repeats_large
    t0 = time.perf_counter()
    try:
      row = bench_one(name, m, args.dim, bs, repeats, args.seed, execute=execute)
    except Exception as err:  # pylint: disable=broad-except
      traceback.print_exc()
      failed = True
      row = {'loss': name, 'form': 'dense' if bs is None else 'blockwise', 'M': m, 'N': m // 2,
             'D': args.dim, 'block_size': bs, 'executed': False, 'repeats': 0,
             'fwd_bwd_ms': None, 'fwd_bwd_ms_all': [], 'compile_s': None, 'loss_value': None,
             'peak_temp_mib': None, 'peak_total_mib': None, 'argument_mib': None,
             'output_mib': None, 'note': f'failed: {type(err).__name__}: {err}'[:300]}
    if execute and not row['executed']:
      failed = True
    row['wall_s'] = time.perf_counter() - t0
    rows.append(row)
    print(f"[{i + 1}/{len(runs)}] {name} {row['form']} M={m}: "
          f"ms={_fmt(row['fwd_bwd_ms'], '.2f')} compile={_fmt(row['compile_s'], '.2f')}s "
          f"temp={_fmt(row['peak_temp_mib'], '.1f')}MiB ({row['wall_s']:.1f}s)"
          + (f" [{row['note']}]" if row['note'] else ''), file=sys.stderr, flush=True)
  meta['total_s'] = time.perf_counter() - t_start
  print(markdown_table(rows))
  notes = [f"- {r['loss']} {r['form']} M={r['M']}: {r['note']}" for r in rows if r['note']]
  if notes:
    print('\nNotes:\n' + '\n'.join(notes))
  print(f"\nTotal {meta['total_s']:.1f} s", flush=True)
  args.json.parent.mkdir(parents=True, exist_ok=True)
  with open(args.json, 'w') as f:
    json.dump({'metadata': meta, 'rows': rows}, f, indent=2)
  print(f'Wrote {args.json}', file=sys.stderr)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
