"""CPU timing of one SimCLR training step: ResNet-18 (CIFAR stem) + projector, NT-Xent, SGD.

    python benchmarks/cpu_resnet_step.py                          # baseline (XLA defaults)
    python benchmarks/cpu_resnet_step.py --variant ynn --steps 7 --json out.json
    python benchmarks/cpu_resnet_step.py --variant onednn,sync_dispatch  # combine with ','
    python benchmarks/cpu_resnet_step.py --list                   # the variants

The step is a pure function of pytrees, jitted with donated buffers: parameters, BatchNorm
statistics and the ``optax.sgd(0.1, momentum=0.9)`` state in, new ones out. The encoder is
``build_encoder(default_model_config())`` (ResNet-18, CIFAR stem, 512 → 2048 → 128
projector with BN); the two views (``2 × batch`` random 32×32×3 float images, already
augmented — augmentation is not timed unless ``--augment``) go through the network as one batch of
``2 × batch``, as in ``glf_jax.train.step``; the loss is ``glf_jax.losses.nt_xent`` (τ = 0.5).

Reported: compile time (lower + compile), ms/step (median over ``--steps`` timed steps after
``--warmup`` untimed ones), throughput in both conventions — ``images/s`` = source images
(``batch`` per step), ``view_images/s`` = network inputs (``2 × batch`` per step) — and the
process's peak RSS. XLA flags of a variant are put in ``XLA_FLAGS`` before JAX is imported, so
one process measures one variant (run the script once per variant).
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

# Variants: name -> (extra XLA flags, environment, code-level options). Code-level options:
#   precision: jax_default_matmul_precision; async: jax_cpu_enable_async_dispatch.
# (im2col and NCHW convolutions were measured too, with an implementation since removed because
# it lost to the 'ynn' flags: see benchmarks/CPU_PERFORMANCE.md.)
VARIANTS = {
    'baseline': ([], {}, {}),
    # XLA CPU runtime / codegen flags known to jaxlib 0.10.2.
    'onednn': (['--xla_cpu_use_onednn=true'], {}, {}),
    'onednn_custom_call': (['--xla_cpu_use_onednn=true',
                            '--xla_cpu_experimental_onednn_custom_call=true'], {}, {}),
    'onednn_fusion': (['--xla_cpu_experimental_onednn_fusion_type=dot,eltwise'], {}, {}),
    'no_xnn': (['--xla_cpu_use_xnnpack=false'], {}, {}),  # XNNPACK is on by default
    'xnn_fusion': (['--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce'], {}, {}),
    'xnn_graph_greedy': (['--xla_cpu_experimental_xnn_graph_fusion_mode='
                          'XNN_GRAPH_FUSION_MODE_GREEDY'], {}, {}),
    'xnn_graph_slinky': (['--xla_cpu_experimental_xnn_graph_fusion_mode='
                          'XNN_GRAPH_FUSION_MODE_GREEDY_SLINKY'], {}, {}),
    # YNNPACK (XNNPACK's successor) library fusions; types: dot, eltwise, reduce,
    # individual_dot, individual_convolution.
    'ynn': (['--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce'], {}, {}),
    'ynn_dot': (['--xla_cpu_experimental_ynn_fusion_type=dot'], {}, {}),
    'ynn_dot_eltwise': (['--xla_cpu_experimental_ynn_fusion_type=dot,eltwise'], {}, {}),
    'ynn_reduce': (['--xla_cpu_experimental_ynn_fusion_type=reduce'], {}, {}),
    'ynn_eltwise_reduce': (['--xla_cpu_experimental_ynn_fusion_type=eltwise,reduce'], {}, {}),
    'ynn_eltwise': (['--xla_cpu_experimental_ynn_fusion_type=eltwise'], {}, {}),
    'ynn_individual_dot': (['--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce,'
                            'individual_dot'], {}, {}),
    'ynn_conv': (['--xla_cpu_experimental_ynn_fusion_type=individual_convolution'], {}, {}),
    'ynn_all': (['--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce,individual_dot,'
                 'individual_convolution'], {}, {}),
    'vector512': (['--xla_cpu_prefer_vector_width=512'], {}, {}),
    'fast_runtime': (['--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME'], {}, {}),
    'fast_math': (['--xla_cpu_enable_fast_math=true'], {}, {}),
    'no_thunks': (['--xla_cpu_use_thunk_runtime=false'], {}, {}),  # deprecated: ignored
    'no_multi_thread_eigen': (['--xla_cpu_multi_thread_eigen=false'], {}, {}),
    'split_codegen': (['--xla_cpu_parallel_codegen_split_count=2'], {}, {}),
    'one_thread': (['--xla_cpu_multi_thread_eigen=false'], {'OMP_NUM_THREADS': '1'}, {}),
    'omp2': ([], {'OMP_NUM_THREADS': '2'}, {}),
    'max_isa_avx2': (['--xla_cpu_max_isa=AVX2'], {}, {}),
    # Code-level alternatives.
    'precision_default': ([], {}, {'precision': 'default'}),
    'precision_highest': ([], {}, {'precision': 'highest'}),
    'sync_dispatch': ([], {}, {'async': False}),
}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument('--variant', default='baseline',
                 help="comma-separated names from --list, e.g. 'onednn,sync_dispatch'")
  p.add_argument('--xla-flags', default='', help='extra XLA flags appended verbatim')
  p.add_argument('--batch', type=int, default=64, help='source images per step (two views each)')
  p.add_argument('--image-size', type=int, default=32)
  p.add_argument('--arch', default='resnet18')
  p.add_argument('--steps', type=int, default=5, help='timed steps (median reported)')
  p.add_argument('--warmup', type=int, default=2, help='untimed steps after compilation')
  p.add_argument('--augment', action='store_true',
                 help='time the on-device two-view augmentation (glf_jax.data.augment) inside '
                      'the step too, from uint8 images')
  p.add_argument('--json', default=None, help='write the result as JSON to this path')
  p.add_argument('--list', action='store_true', help='list the variants and exit')
  return p.parse_args(argv)


def cpu_steal_seconds() -> float | None:
  """Seconds the hypervisor ran other guests on our vCPUs (Linux ``/proc/stat``), or None."""
  try:
    with open('/proc/stat') as f:
      fields = f.readline().split()
    return int(fields[8]) / os.sysconf('SC_CLK_TCK')
  except (OSError, IndexError, ValueError):
    return None


def resolve_variant(spec: str):
  flags, env, opts = [], {}, {}
  for name in [s for s in spec.split(',') if s]:
    if name not in VARIANTS:
      raise SystemExit(f'unknown variant {name!r}; one of {sorted(VARIANTS)}')
    f, e, o = VARIANTS[name]
    flags += f
    env.update(e)
    opts.update(o)
  return flags, env, opts


def main(argv=None):
  args = parse_args(argv)
  if args.list:
    for name, (f, e, o) in VARIANTS.items():
      print(f'{name:24s} flags={" ".join(f) or "-"} env={e or "-"} code={o or "-"}')
    return
  flags, env, opts = resolve_variant(args.variant)
  flags += args.xla_flags.split()
  os.environ.update(env)
  if flags:
    os.environ['XLA_FLAGS'] = ' '.join([os.environ.get('XLA_FLAGS', '')] + flags).strip()

  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from glf_jax.losses import nt_xent  # pylint: disable=g-import-not-at-top
  from glf_jax.models import build_encoder, default_model_config  # pylint: disable=g-import-not-at-top

  if 'async' in opts:
    jax.config.update('jax_cpu_enable_async_dispatch', opts['async'])
  if 'precision' in opts:
    jax.config.update('jax_default_matmul_precision', opts['precision'])

  model_config = default_model_config(args.arch, stem='cifar')
  model = build_encoder(model_config, rngs=nnx.Rngs(0))
  model.train()
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  tx = optax.sgd(0.1, momentum=0.9)
  opt_state = tx.init(params)

  n = args.batch
  if args.augment:
    from glf_jax.data import augment  # pylint: disable=g-import-not-at-top
    augment_config = augment.simclr_config(args.image_size, dataset='cifar10')

  def step(params, batch_stats, opt_state, data):
    if args.augment:
      v1, v2 = augment.two_views(data['key'], data['images'], augment_config)
      views = jnp.concatenate([v1, v2])
    else:
      views = data['views']

    def loss_fn(p):
      m = nnx.merge(graphdef, p, jax.tree.map(lambda x: x, batch_stats))
      z = m(views)['z'].astype(jnp.float32)
      loss, _ = nt_xent(z[:n], z[n:], temperature=0.5)
      return loss, nnx.state(m, nnx.BatchStat)

    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_stats, new_opt_state, loss

  rng = np.random.default_rng(0)
  s = args.image_size
  if args.augment:
    data = {'key': jax.random.key(0),
            'images': jnp.asarray(rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8))}
  else:
    data = {'views': jnp.asarray(rng.standard_normal((2 * n, s, s, 3), dtype=np.float32))}

  jitted = jax.jit(step, donate_argnums=(0, 1, 2))
  t0 = time.perf_counter()
  compiled = jitted.lower(params, batch_stats, opt_state, data).compile()
  compile_s = time.perf_counter() - t0

  times, cpu_times, losses = [], [], []
  steal0, loop0 = cpu_steal_seconds(), time.perf_counter()
  for i in range(args.warmup + args.steps):
    t, c = time.perf_counter(), time.process_time()
    params, batch_stats, opt_state, loss = compiled(params, batch_stats, opt_state, data)
    loss = float(loss)  # blocks
    dt, dc = time.perf_counter() - t, time.process_time() - c
    losses.append(loss)
    if i >= args.warmup:
      times.append(dt)
      cpu_times.append(dc)
  steal1, loop1 = cpu_steal_seconds(), time.perf_counter()
  steal_frac = (None if steal0 is None else
                round((steal1 - steal0) / ((loop1 - loop0) * (os.cpu_count() or 1)), 3))
  ms = statistics.median(times) * 1e3
  load1 = os.getloadavg()[0]
  result = {
      'variant': args.variant,
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'env': env,
      'code': opts,
      'batch': n,
      'view_images_per_step': 2 * n,
      'compile_s': round(compile_s, 2),
      'ms_per_step': round(ms, 1),
      'ms_per_step_min': round(min(times) * 1e3, 1),
      'ms_per_step_all': [round(t * 1e3, 1) for t in times],
      # CPU seconds (all threads) per step: less sensitive than wall time to other processes
      # competing for the cores (but it counts spin-waiting).
      'cpu_s_per_step': round(statistics.median(cpu_times), 2),
      'images_per_s': round(n / (ms / 1e3), 2),
      'view_images_per_s': round(2 * n / (ms / 1e3), 2),
      'peak_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      'losses': [round(l, 5) for l in losses],
      'loadavg_1min_at_end': round(load1, 2),
      'cpu_steal_fraction': steal_frac,  # share of the vCPUs' time taken by the hypervisor
      'jax': jax.__version__,
      'cpus': os.cpu_count(),
      'processor': platform.processor() or platform.machine(),
  }
  print(json.dumps({k: v for k, v in result.items() if k not in ('losses',)}, indent=None))
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + '\n')
  return result


if __name__ == '__main__':
  main()
