"""The numbers of a few training steps under the installed jax, to compare jax versions or presets.

Runs ``--steps`` steps of a config's jitted training step (the real step: views, objective,
optimiser; random uint8 batches from a fixed seed, so no data is needed) under the XLA CPU preset
``--preset``, prints the losses and writes them, with the final parameters' summary, to JSON.
Run it in two virtual environments (e.g. jax 0.10.1 and 0.10.2) and compare the files::

    python benchmarks/step_numerics.py --json /tmp/a.json                 # one environment
    /other/venv/bin/python benchmarks/step_numerics.py --json /tmp/b.json  # another
    python benchmarks/step_numerics.py --compare /tmp/a.json /tmp/b.json

The default config is ``configs/studies/cifar10.py``'s ``:midi`` SimCLR run (``resnet_small``,
batch 256, 16 px): the step of the ``:midi`` studies. A miscompiled step shows as losses that
part after a step or two; two correct builds agree to float rounding (about 1e-6).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys

_REPO = pathlib.Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
  sys.path.insert(0, str(_REPO))

from glf_jax.runtime import xla_cpu  # noqa: E402  (before jax starts)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--method', default='simclr',
                 help="cifar10_run's method (configs/studies/cifar10.py)")
  p.add_argument('--steps', type=int, default=12)
  p.add_argument('--preset', default='fast', help='XLA CPU preset (glf_jax.runtime.xla_cpu)')
  p.add_argument('--json', type=pathlib.Path,
                 default=_REPO / 'benchmarks' / 'results' / 'step_numerics.json')
  p.add_argument('--compare', nargs=2, type=pathlib.Path, default=None,
                 help='compare two files this script wrote, and exit')
  return p.parse_args(argv)


def measure(args) -> dict:
  xla_cpu.configure(args.preset)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from glf_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from glf_jax import prior as prior_lib  # pylint: disable=g-import-not-at-top
  from glf_jax.train.setup import build_training  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_module('configs/studies/cifar10.py').cifar10_run(args.method)
  config.model.num_classes = 10
  config_lib.validate(config)
  training = build_training(config, steps_per_epoch=195, num_classes=10)
  prior_apply, prior_state = prior_lib.build_prior(config, training.objective)
  step = jax.jit(training.train_step(prior_apply))
  rng = np.random.RandomState(0)
  size, batch_size = int(config.data.image_size), int(config.train.batch_size)
  state, losses = training.state, []
  for _ in range(args.steps):
    batch = {'image': rng.randint(0, 256, (batch_size, size, size, 3)).astype(np.uint8),
             'label': (np.arange(batch_size) % 10).astype(np.int32)}
    state, metrics = step(state, batch, prior_state)
    losses.append(float(metrics['loss']))
  params = [np.asarray(x, np.float64) for x in jax.tree.leaves(state['params'])]
  return {'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
          'jax': jax.__version__, 'jaxlib': jax.lib.__version__, 'preset': args.preset,
          'method': args.method, 'arch': config.model.arch, 'batch_size': batch_size,
          'image_size': size, 'losses': losses,
          'param_norms': [float(np.linalg.norm(p)) for p in params]}


def compare(a: dict, b: dict) -> dict:
  """The largest loss difference and the largest relative difference of the parameter norms."""
  loss = max(abs(x - y) for x, y in zip(a['losses'], b['losses']))
  norms = max(abs(x - y) / max(abs(x), 1e-12)
              for x, y in zip(a['param_norms'], b['param_norms']) if abs(x) > 1e-6)
  return {'a': f"jax {a['jax']} ({a['preset']})", 'b': f"jax {b['jax']} ({b['preset']})",
          'steps': len(a['losses']), 'max_loss_difference': loss,
          'max_relative_param_norm_difference': norms}


def main(argv=None):
  args = parse_args(argv)
  if args.compare:
    a, b = (json.loads(p.read_text()) for p in args.compare)
    result = compare(a, b)
    print(f"| a | b | steps | max loss difference | max relative parameter-norm difference |\n"
          f"|---|---|---:|---:|---:|\n| {result['a']} | {result['b']} | {result['steps']} | "
          f"{result['max_loss_difference']:.2e} | "
          f"{result['max_relative_param_norm_difference']:.2e} |")
    return
  result = measure(args)
  print(json.dumps({k: result[k] for k in ('jax', 'preset', 'arch', 'batch_size', 'losses')}))
  args.json.parent.mkdir(parents=True, exist_ok=True)
  args.json.write_text(json.dumps(result, indent=2))
  print(f'Wrote {args.json}', file=sys.stderr)


if __name__ == '__main__':
  main()
