"""Per-layer CPU timing of ResNet-18's convolutions: forward, input gradient, weight gradient.

    python benchmarks/cpu_conv_layers.py                        # XLA 'fast' preset, lax convs
    python benchmarks/cpu_conv_layers.py --variant baseline     # XLA defaults
    python benchmarks/cpu_conv_layers.py --formulations lax,shifted_dot,winograd --json c.json
    python benchmarks/cpu_conv_layers.py --dtype bfloat16

Why: the SimCLR ResNet-18 step on a CPU spends ~90 % of its time in convolutions
(``benchmarks/CPU_PERFORMANCE.md``). This script splits that time by layer and by pass, so a
change to XLA flags, dtype or the way a convolution is written can be judged where it matters.

Each of ResNet-18's convolution shapes (CIFAR stem; batch ``2 × --batch`` views, as the train
step runs both views as one batch) is timed as three jitted functions: the forward
convolution, the gradient with respect to the input (``dx``) and with respect to the kernel
(``dw``), each the median of ``--repeats`` calls after one warm-up. Totals weight each shape by
how often it occurs in the network; they cover the convolutions only (no BatchNorm, ReLU, head,
loss or optimiser), so they are a floor for the step time.

Formulations (alternatives to ``lax.conv_general_dilated``, kept so their numbers can be re-run;
each is checked against ``lax`` and its relative error reported):

* ``lax``: ``lax.conv_general_dilated`` and its autodiff (what ``nnx.Conv`` does).
* ``shifted_dot``: the weight gradient as 9 matmuls, ``dW[i, j] = Σ_{n,h,w} x_pad[n, h+i, w+j]ᵀ g``,
  one per kernel tap (forward and ``dx`` as ``lax``).
* ``winograd``: Winograd F(2×2, 3×3) (Lavin & Gray, 2016): input tiles transformed by ``Bᵀ d B``,
  kernel by ``G g Gᵀ``, 16 batched matmuls, output ``Aᵀ m A`` — 2.25× fewer multiplications;
  gradients by autodiff. Only stride-1 3×3 layers; others are timed as ``lax``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

# ResNet-18 with the CIFAR stem on 32×32 inputs: (input size, C_in, C_out, kernel, stride, count).
RESNET18_CIFAR_CONVS = (
    (32, 3, 64, 3, 1, 1),      # stem
    (32, 64, 64, 3, 1, 4),     # stage 1: 2 blocks × 2 convs
    (32, 64, 128, 3, 2, 1),    # stage 2: first conv (downsampling)
    (32, 64, 128, 1, 2, 1),    #   projection shortcut
    (16, 128, 128, 3, 1, 3),   #   remaining convs
    (16, 128, 256, 3, 2, 1),   # stage 3
    (16, 128, 256, 1, 2, 1),
    (8, 256, 256, 3, 1, 3),
    (8, 256, 512, 3, 2, 1),    # stage 4
    (8, 256, 512, 1, 2, 1),
    (4, 512, 512, 3, 1, 3),
)

FORMULATIONS = ('lax', 'shifted_dot', 'winograd')


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--variant', default='fast',
                 help="'fast' (glf_jax.runtime.xla_cpu preset), or names from "
                      "benchmarks/cpu_resnet_step.py --list joined by ','")
  p.add_argument('--batch', type=int, default=64, help='source images; 2 × batch views')
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--formulations', default='lax')
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--max-size', type=int, default=32,
                 help='only layers whose input is at most this size (quick runs)')
  p.add_argument('--json', type=pathlib.Path, default=None)
  args = p.parse_args(argv)
  args.formulations = [f for f in args.formulations.split(',') if f]
  unknown = set(args.formulations) - set(FORMULATIONS)
  if unknown:
    p.error(f'unknown formulation(s) {sorted(unknown)}; known: {", ".join(FORMULATIONS)}')
  return args


def xla_flags_for(variant: str) -> list[str]:
  if variant == 'fast':
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
    from glf_jax.runtime import xla_cpu  # noqa: E402  (does not import jax)
    return list(xla_cpu.PRESETS['fast'])
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
  from cpu_resnet_step import resolve_variant  # noqa: E402
  return list(resolve_variant(variant)[0])


def main(argv=None):
  args = parse_args(argv)
  flags = xla_flags_for(args.variant)
  os.environ['XLA_FLAGS'] = ' '.join([os.environ.get('XLA_FLAGS', '')] + flags).strip()

  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax import lax

  dtype = jnp.dtype(args.dtype)

  def lax_conv(x, w, stride):
    pad = w.shape[0] // 2
    return lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad), (pad, pad)],
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  def shifted_dot_dw(x, g, k, stride):
    pad = k // 2
    n, _, _, c = x.shape
    ho, wo = g.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    taps = [[jnp.einsum('nhwc,nhwo->co',
                        lax.slice(xp, (0, i, j, 0),
                                  (n, i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1, c),
                                  (1, stride, stride, 1)), g)
             for j in range(k)] for i in range(k)]
    return jnp.stack([jnp.stack(row) for row in taps])

  # Winograd F(2×2, 3×3) matrices (Lavin & Gray 2016, eq. 7).
  g_mat = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)

  def b_t(d):  # Bᵀ applied to 4 rows
    return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]

  def a_t(m):  # Aᵀ applied to 4 rows
    return [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]

  def winograd_conv(x, w):
    n, h, wd, c = x.shape
    o = w.shape[-1]
    th, tw = h // 2, wd // 2
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    d = [[lax.slice(xp, (0, a, b, 0), (n, a + 2 * th - 1, b + 2 * tw - 1, c), (1, 2, 2, 1))
          for b in range(4)] for a in range(4)]
    rows = [b_t([d[a][b] for a in range(4)]) for b in range(4)]
    v = [b_t([rows[b][a] for b in range(4)]) for a in range(4)]
    v = jnp.stack([v[a][b] for a in range(4) for b in range(4)]).reshape(16, n * th * tw, c)
    u = jnp.einsum('ia,abco,jb->ijco', g_mat.astype(w.dtype), w, g_mat.astype(w.dtype))
    m = jnp.einsum('kpc,kco->kpo', v, u.reshape(16, c, o)).reshape(4, 4, n, th, tw, o)
    cols = [a_t([m[a, b] for a in range(4)]) for b in range(4)]
    y = [[a_t([cols[b][i] for b in range(4)])[j] for j in range(2)] for i in range(2)]
    y = jnp.stack([jnp.stack(y[i], axis=3) for i in range(2)], axis=2)  # n, th, 2, tw, 2, o
    return y.reshape(n, h, wd, o)

  def passes(formulation, k, stride):
    """(forward, dx, dw) functions of (x, w, g) for one formulation and layer."""
    uses_winograd = formulation == 'winograd' and k == 3 and stride == 1
    fwd = winograd_conv if uses_winograd else (lambda x, w: lax_conv(x, w, stride))
    dx = lambda x, w, g: jax.vjp(lambda x_: fwd(x_, w), x)[1](g)[0]  # noqa: E731
    dw = lambda x, w, g: jax.vjp(lambda w_: fwd(x, w_), w)[1](g)[0]  # noqa: E731
    if formulation == 'shifted_dot':
      dw = lambda x, w, g: shifted_dot_dw(x, g, k, stride)  # noqa: E731
    applies = formulation != 'winograd' or uses_winograd
    return (lambda x, w, g: fwd(x, w)), dx, dw, applies

  def timed(fn, *operands):
    fn = jax.jit(fn)
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*operands))  # compile + first call
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*operands))
      times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, first_s, out

  views = 2 * args.batch
  rows = []
  for in_size, c_in, c_out, k, stride, count in RESNET18_CIFAR_CONVS:
    if in_size > args.max_size:
      continue
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (views, in_size, in_size, c_in), dtype)
    w = (jax.random.normal(keys[1], (k, k, c_in, c_out)) / np.sqrt(k * k * c_in)).astype(dtype)
    out_size = in_size // stride
    g = jax.random.normal(keys[2], (views, out_size, out_size, c_out), dtype)
    gflop = 2 * views * out_size * out_size * k * k * c_in * c_out / 1e9
    reference = None
    for formulation in args.formulations:
      fwd, dx, dw, applies = passes(formulation, k, stride)
      row = dict(layer=f'{in_size}x{in_size} {c_in}->{c_out} k{k} s{stride}', count=count,
                 formulation=formulation, applies=applies, gflop_per_pass=round(gflop, 3))
      outs = []
      for name, fn in (('fwd', fwd), ('dx', dx), ('dw', dw)):
        ms, first_s, out = timed(fn, x, w, g)
        row[f'{name}_ms'] = round(ms, 2)
        row[f'{name}_gflops'] = round(gflop / ms * 1e3, 1)
        row[f'{name}_first_call_s'] = round(first_s, 3)
        outs.append(np.asarray(out, np.float64))
      if reference is None:
        reference = outs
      row['max_rel_err_vs_first'] = float(max(
          np.abs(a - b).max() / max(np.abs(b).max(), 1e-30) for a, b in zip(outs, reference)))
      rows.append(row)
      print(f"  {row['layer']:<26} ×{count} {formulation:<11} fwd {row['fwd_ms']:8.1f} ms  "
            f"dx {row['dx_ms']:8.1f} ms  dw {row['dw_ms']:8.1f} ms", file=sys.stderr, flush=True)

  totals = {}
  for formulation in args.formulations:
    mine = [r for r in rows if r['formulation'] == formulation]
    t = {p: sum(r[f'{p}_ms'] * r['count'] for r in mine) for p in ('fwd', 'dx', 'dw')}
    gflop = sum(3 * r['gflop_per_pass'] * r['count'] for r in mine)
    t['total'] = sum(t.values())
    totals[formulation] = dict({f'{p}_ms': round(v, 1) for p, v in t.items()},
                               gflop=round(gflop, 1),
                               gflops=round(gflop / t['total'] * 1e3, 1) if t['total'] else None)

  print(f"\nResNet-18 (CIFAR) convolutions, {views} views, {args.dtype}, XLA variant "
        f"'{args.variant}', jax {jax.__version__}; ms = median of {args.repeats}\n")
  print('| layer | × | formulation | fwd ms (GFLOP/s) | dx ms (GFLOP/s) | dw ms (GFLOP/s) '
        '| rel. err |')
  print('|---|---|---|---|---|---|---|')
  for r in rows:
    cells = ' | '.join(f"{r[f'{p}_ms']:.1f} ({r[f'{p}_gflops']:.0f})" for p in ('fwd', 'dx', 'dw'))
    name = r['formulation'] + ('' if r['applies'] else ' (= lax)')
    print(f"| {r['layer']} | {r['count']} | {name} | {cells} | {r['max_rel_err_vs_first']:.1e} |")
  print('\n| formulation | fwd ms | dx ms | dw ms | total ms | GFLOP | GFLOP/s |')
  print('|---|---|---|---|---|---|---|')
  for f, t in totals.items():
    print(f"| {f} | {t['fwd_ms']:.0f} | {t['dx_ms']:.0f} | {t['dw_ms']:.0f} | "
          f"{t['total_ms']:.0f} | {t['gflop']:.0f} | {t['gflops']} |")

  if args.json:
    args.json.write_text(json.dumps(dict(
        metadata=dict(jax_version=jax.__version__, variant=args.variant,
                      xla_flags=os.environ['XLA_FLAGS'], dtype=args.dtype, views=views,
                      repeats=args.repeats, cpus=os.cpu_count(), processor=platform.processor(),
                      loadavg_1min_at_end=os.getloadavg()[0]),
        rows=rows, totals=totals), indent=1))


if __name__ == '__main__':
  main()
