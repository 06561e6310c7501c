"""A 2-member cohort step against two separate members' steps (glf_jax.cohort).

    python benchmarks/cohort_step.py          # the quickstart's network on digits, batch 256
    python benchmarks/cohort_step.py --arch resnet18 --dataset cifar10 --batch-size 128
    python benchmarks/cohort_step.py --quick  # tiny model, batch 64: smoke run
    python benchmarks/cohort_step.py --vmap   # also: the members' encoders vmapped, or not

The cohort step, in both of its dispatches (``cohort.dispatch``: ``split``, the views by one
program and then each member's train step as its own program on them; ``fused``, every member's
step in one jit, the views computed once by XLA's common-subexpression elimination), is timed
against the two members' own jitted steps (``glf_jax.train.step``, what two separate runs
execute), on the same batch, in paired rounds: each round times every side back to back
(alternating the order), so drift hits all sides alike; a dispatch's ratio is the median over
rounds of ``cohort / (separate a + separate b)``. Host-side data loading, which a cohort also
shares, is not in either side. XLA's operation count (``cost_analysis``) of each compiled program
is printed as well: it shows how much work the shared views save, independent of timing noise.

``--vmap`` adds the alternative the issue allowed for members of one architecture: both members'
encoder forward and backward passes (on the same views; a stand-in contrastive loss per member) as
one ``jax.vmap`` over the stacked parameters, against the two passes one after the other, both
jitted, in paired rounds as above. Under ``vmap`` every convolution after the first becomes a
grouped convolution (``feature_group_count`` = members).
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

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from glf_jax import config as config_lib  # noqa: E402
from glf_jax.runtime import xla_cpu  # noqa: E402
from glf_jax import cohort  # noqa: E402
from glf_jax.train import step as step_lib  # noqa: E402


def _gflop(compiled) -> float | None:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost['flops']) / 1e9 if cost and 'flops' in cost else None


def build(args):
  from glf_jax.data import make_source  # pylint: disable=g-import-not-at-top
  if args.dataset == 'digits':
    config = config_lib.base_config('simclr', 'digits', 'resnet_tiny')
    config.model.width_multiplier = 2  # the quickstart's network
    config.model.projector_hidden_dim = 128
    config.model.projection_dim = 64
  else:
    config = config_lib.base_config('simclr', args.dataset, args.arch)
  if args.quick:
    config_lib.tiny(config)
  config.train.batch_size = args.batch_size
  config.train.num_steps = 1000
  config.train.num_devices = 1
  config.optim.name = 'adamw'
  config.optim.lr_scaling = 'none'
  cohort.cohort_config(config, [('cl', {'objective.simclr.temperature': 0.5}),
                                ('nscl', {'objective.name': 'nscl'})])
  source = make_source(config.data, 'train') if args.dataset == 'digits' else None
  members = cohort.build_members(config, steps_per_epoch=100, num_classes=10, source=source)
  state, _ = cohort.initial_state(members)
  from glf_jax.data import datasets  # pylint: disable=g-import-not-at-top
  size = config.data.get('image_size') or datasets.dataset_info(args.dataset).image_size
  info_shape = (args.batch_size, size, size, 3)
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, info_shape, dtype=np.uint8),
           'label': rng.integers(0, 10, (args.batch_size,), dtype=np.int32),
           'index': np.arange(args.batch_size, dtype=np.int32)}
  batch = jax.device_put(batch)
  priors = {m.name: m.prior_state for m in members}
  copy = lambda tree: jax.tree.map(lambda x: x.copy(), tree)  # noqa: E731
  # One jitted program per side: (state, batch, prior) -> (state, outputs), donating the state.
  programs, states, flops = {}, {}, {}
  for dispatch in cohort.DISPATCH:
    programs[f'cohort {dispatch}'] = cohort.cohort_step_program(members, dispatch)
    states[f'cohort {dispatch}'] = copy(state)
  for m in members:
    programs[m.name] = jax.jit(m.training.train_step(m.prior_apply), donate_argnums=0)
    states[m.name] = copy(state['members'][m.name])
    flops[m.name] = _gflop(programs[m.name].lower(states[m.name], batch, m.prior_state).compile())
  flops['cohort fused'] = _gflop(programs['cohort fused'].lower(state, batch, priors).compile())
  views_fn = jax.jit(step_lib.make_views(config.augment))
  views = views_fn(state['members'][members[0].name], batch)
  split = [_gflop(views_fn.lower(state['members'][members[0].name], batch).compile())]
  split += [_gflop(programs[m.name].lower(states[m.name], batch, m.prior_state, views).compile())
            for m in members]  # each member's step on given views
  flops['cohort split'] = None if None in split else sum(split)
  priors_of = {m.name: m.prior_state for m in members}
  priors_of.update({f'cohort {d}': priors for d in cohort.DISPATCH})
  return config, members, programs, states, batch, priors_of, flops


def paired_rounds(run, sides, rounds: int, warmup: int) -> tuple[dict, list[dict]]:
  """Times ``run(side)`` for every side, ``warmup`` rounds untimed, then ``rounds`` rounds with the
  order reversed every other round. Returns ``({side: [seconds]}, [{side: seconds} per round])``."""
  sides = list(sides)
  for _ in range(warmup):
    for side in sides:
      run(side)
  times, per_round = {side: [] for side in sides}, []
  for r in range(rounds):
    got = {side: run(side) for side in (sides if r % 2 == 0 else reversed(sides))}
    for side, seconds in got.items():
      times[side].append(seconds)
    per_round.append(got)
  return times, per_round


def vmap_rounds(members, image_shape, rounds: int, warmup: int) -> dict:
  """Milliseconds of the two members' encoder forward + backward passes, one after the other
  against ``jax.vmap`` over their stacked parameters (see the module docstring)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  graphdef = members[0].training.train_graphdef
  params = [m.training.state['params'] for m in members]
  stats = [m.training.state['batch_stats'] for m in members]
  if any(jax.tree.structure(p) != jax.tree.structure(params[0]) for p in params):
    raise SystemExit('--vmap needs members with the same parameter structure')
  n, h, w, c = image_shape
  views = jax.random.normal(jax.random.key(0), (2 * n, h, w, c))  # both views of a batch
  temperatures = [0.5 + 0.5 * i for i in range(len(members))]

  def forward(p, s, v):
    model = nnx.merge(graphdef, p, jax.tree.map(lambda x: x, s))
    return model(v)['z'], nnx.state(model, nnx.BatchStat)

  def loss_of(z, t):  # a stand-in contrastive loss: each member its own temperature
    z = z / jnp.linalg.norm(z, axis=1, keepdims=True)
    return jnp.mean(jax.nn.logsumexp(z @ z.T / t, axis=1))

  def one_after_the_other(params, stats):
    out = []
    for p, s, t in zip(params, stats, temperatures):
      def f(p, s=s, t=t):
        z, new_stats = forward(p, s, views)
        return loss_of(z, t), new_stats
      out.append(jax.value_and_grad(f, has_aux=True)(p))
    return out

  def vmapped(params, stats):
    def f(params):
      z, new_stats = jax.vmap(forward, in_axes=(0, 0, None))(params, stats, views)
      return sum(loss_of(z[i], t) for i, t in enumerate(temperatures)), new_stats
    return jax.value_and_grad(f, has_aux=True)(params)

  stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)  # noqa: E731
  sides = {'one after the other': (jax.jit(one_after_the_other), (params, stats)),
           'vmapped': (jax.jit(vmapped), (stack(params), stack(stats)))}
  separate = sum(float(loss) for (loss, _), _ in sides['one after the other'][0](params, stats))
  (together, _), _ = sides['vmapped'][0](*sides['vmapped'][1])
  if not np.isclose(separate, float(together), rtol=1e-5):  # the same computation, batched
    raise SystemExit(f'vmapped loss {float(together)} != {separate}')

  def run(which):
    fn, args = sides[which]
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t

  times, per_round = paired_rounds(run, sides, rounds, warmup)
  ratios = [got['vmapped'] / got['one after the other'] for got in per_round]
  ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
  print('\n| encoders, forward + backward | ms (median) |\n|---|---:|')
  for which, value in ms.items():
    print(f'| {which} | {value:.1f} |')
  print(f'\nvmapped / one after the other: {statistics.median(ratios):.3f} (median of paired '
        f'rounds; range {min(ratios):.3f}-{max(ratios):.3f})')
  return {'ms': ms, 'ratio_median': statistics.median(ratios), 'ratios': ratios}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--dataset', default='digits', help="'digits' (default) or a TFDS name "
                      '(synthetic images of its size)')
  parser.add_argument('--arch', default='resnet18', help='backbone when --dataset is not digits')
  parser.add_argument('--batch-size', type=int, default=256)
  parser.add_argument('--rounds', type=int, default=10, help='timed paired rounds')
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--xla-cpu-flags', default='fast')
  parser.add_argument('--quick', action='store_true', help='tiny model, batch 64, 3 rounds')
  parser.add_argument('--vmap', action='store_true',
                      help="also time the members' encoders vmapped over stacked parameters")
  parser.add_argument('--json', default='benchmarks/results/cohort_step.json')
  args = parser.parse_args(argv)
  if args.quick:
    args.batch_size, args.rounds, args.warmup = min(args.batch_size, 64), 3, 1
  xla_cpu.configure(args.xla_cpu_flags)
  config, members, programs, states, batch, priors, flops = build(args)
  names = [m.name for m in members]
  cohorts = [f'cohort {d}' for d in cohort.DISPATCH]

  def run(which):
    t = time.perf_counter()
    states[which], out = programs[which](states[which], batch, priors[which])
    jax.block_until_ready((states[which], out))
    return time.perf_counter() - t

  times, per_round = paired_rounds(run, (*cohorts, *names), args.rounds, args.warmup)
  ratios = {c: [got[c] / sum(got[n] for n in names) for got in per_round] for c in cohorts}
  ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
  two = sum(ms[n] for n in names)
  gflop_two = (sum(flops[n] for n in names) if all(flops[n] for n in names) else None)
  rows = [(f'{c} (cl + nscl)', ms[c], flops[c]) for c in cohorts]
  rows += [(f'separate {n} ({m.config.objective.name})', ms[n], flops[n])
           for n, m in zip(names, members)]
  rows.append(('separate, both', two, gflop_two))
  label = f'{config.model.arch} x{config.model.width_multiplier}, {args.dataset}, batch ' \
          f'{args.batch_size}, {args.rounds} rounds'
  print(f'\n{label}\n')
  print('| step | ms/step (median) | GFLOP/step |\n|---|---:|---:|')
  for name, value, gflop in rows:
    print(f'| {name} | {value:.1f} | {gflop:.3f} |' if gflop is not None else
          f'| {name} | {value:.1f} | - |')
  ratio = {c: statistics.median(r) for c, r in ratios.items()}
  for c in cohorts:
    print(f'\n{c} / two separate steps: {ratio[c]:.3f} (median of paired rounds; range '
          f'{min(ratios[c]):.3f}-{max(ratios[c]):.3f})'
          + (f'; in XLA operations {flops[c] / gflop_two:.3f}' if gflop_two and flops[c] else ''))
  result = {'label': label, 'ms': ms, 'gflop': flops, 'ratio_median': ratio,
            'ratios': ratios, 'times': times, 'args': vars(args),
            'jax': jax.__version__, 'backend': jax.default_backend(),
            'machine': platform.machine(), 'cpus': os.cpu_count()}
  if args.vmap:
    result['vmap'] = vmap_rounds(members, batch['image'].shape, args.rounds, args.warmup)
  if args.json:
    os.makedirs(os.path.dirname(args.json) or '.', exist_ok=True)
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(result, f, indent=2)
    print(f'written to {args.json}')
  return result


if __name__ == '__main__':
  main()
