"""Entry point: ``python -m glf_jax.main --config configs/<name>.py[:arg] --workdir DIR``.

Modes (``config.mode``): ``pretrain`` (resumable; then evaluates), ``eval`` (linear probe, kNN,
geometry, alignment/uniformity of a trained run), ``linear_probe``, ``knn``, ``finetune``
(transfer: fine-tune or linear-probe a pretrained encoder on ``config.eval.data``), ``export``
(a run's backbone as a torchvision state dict, ``configs/export.py``).

The config is locked: overriding or adding an unknown key (``--config.nope=1``) is an error that
names the key. Multi-process runs set ``--config.distributed.*`` (see ``launch/``).
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file('config', None, 'Path to a get_config() file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and summary.json.')
flags.mark_flags_as_required(['config', 'workdir'])


def run(config, workdir):
  """Runs ``config.mode`` in ``workdir``; returns the summary dict (also written as JSON)."""
  from glf_jax import parallel  # deferred: importing JAX before flags parse slows --help
  d = config.distributed
  # num_processes: None = one process, N = explicit; auto_detect: found in the cluster's
  # environment.
  parallel.initialize_distributed(d.coordinator_address, -1 if d.auto_detect else d.num_processes,
                                  d.process_id)
  from glf_jax import runner  # pylint: disable=g-import-not-at-top
  return runner.run(config, workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax and grain log every step at INFO
  from glf_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  # Before JAX initialises its backend (XLA reads XLA_FLAGS once); a no-op on GPU/TPU.
  xla_cpu.configure(flags.FLAGS.config.xla_cpu_flags)
  try:
    summary = run(flags.FLAGS.config, flags.FLAGS.workdir)
  except KeyboardInterrupt:
    # A second Ctrl-C (or one outside training): stop at once, one line, no traceback. os._exit
    # skips the interpreter's teardown, which can crash with orbax's and grain's threads alive.
    print('\naborted: nothing saved since the last checkpoint; run the same command to resume',
          file=sys.stderr, flush=True)
    os._exit(130)  # pylint: disable=protected-access
  except (ValueError, FileNotFoundError, FloatingPointError, OSError) as e:
    # Configuration and data errors: one clear line, no traceback noise; exit status 1.
    logging.error('%s: %s', type(e).__name__, e)
    print(f'error: {type(e).__name__}: {e}', file=sys.stderr)
    if os.environ.get('GLF_JAX_TRACEBACK'):
      raise
    sys.exit(1)
  if summary.get('stop_signal') == 'SIGINT':
    sys.exit(130)  # Ctrl-C: saved, but the run did not finish (SIGTERM exits 0 for schedulers)


if __name__ == '__main__':
  app.run(main)
