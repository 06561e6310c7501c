"""Entry point: ``python -m glf_jax.main --config configs/<name>.py[:arg] --workdir DIR``.

Modes (``config.mode``): ``pretrain`` (resumable; then evaluates), ``eval`` (linear probe, kNN,
geometry, alignment/uniformity of a trained run), ``linear_probe``, ``knn``, ``finetune``
(transfer: fine-tune or linear-probe a pretrained encoder on ``config.eval.data``), ``export``
(a run's backbone as a torchvision state dict, ``configs/export.py``), ``compile`` (the train step
compiled for a TPU slice or GPU box this host lacks, ``--config.compile.target=tpu:v5e:2x2``: its
memory, FLOPs, collectives and a roofline estimate), ``plot`` (redraws a run's plots) and
``show_config`` (prints every key of the resolved config, one ``key: value`` a line, and exits;
the workdir is not touched).

The config is locked: overriding or adding an unknown key (``--config.nope=1``) is an error that
names the key. Multi-process runs set ``--config.distributed.*`` (see ``launch/``).

Mistakes in the command line, the config or the data end the run with one ``error: ...`` line on
stderr and exit status 1; ``GLF_JAX_TRACEBACK=1`` re-raises them with their traceback instead.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from glf_jax import flag_errors

config_flags.DEFINE_config_file('config', None, 'Path to a get_config() file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and summary.json.')
REQUIRED_FLAGS = ('config', 'workdir')
flags.mark_flags_as_required(list(REQUIRED_FLAGS))


def _fail(message: str, error: BaseException | None = None) -> None:
  """Ends the program with ``error: message`` (one line) and exit status 1."""
  if error is not None and os.environ.get('GLF_JAX_TRACEBACK'):
    raise error
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(1)


def _parse_flags(argv):
  """absl's flag parsing with its errors as one line: config overrides are parsed (and refused)
  by ml_collections' flag before ``main`` runs, so ``main`` cannot catch them. A missing
  required flag is reported at once, before parsing loads the config file."""
  missing = flag_errors.missing_required(argv, REQUIRED_FLAGS)
  if missing:
    _fail(f'--{missing} is required')
  try:
    rest = flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except  # KeyError/AttributeError: unknown keys
    _fail(flag_errors.flag_error_message(e, argv), e)
  try:
    flags.FLAGS.config.get('mode')  # ml_collections defers a config file's loading errors
  except OSError as e:
    spec = flag_errors.config_spec(argv) or ''
    if not os.path.isfile(spec.split(':', 1)[0]):
      _fail(flag_errors.missing_config_message(spec), e)
    _fail(f'config {spec}: {flag_errors.one_line(flag_errors.innermost(e))}', e)
  return rest


def check_workdir(workdir: str) -> None:
  """Refuses (one line) a URL workdir that cannot hold a run or whose backend is not installed;
  a ``gs://`` workdir holds the run's files in one place for every host
  (``glf_jax.runtime.fileio``)."""
  from glf_jax.runtime import fileio  # pylint: disable=g-import-not-at-top
  fileio.check_url(workdir)


def run(config, workdir):
  """Runs ``config.mode`` in ``workdir``; returns the summary dict (also written as JSON).

  ``study`` runs cells of runs (``glf_jax.study``); every other mode is one run
  (``glf_jax.modes``)."""
  if config.mode == 'show_config':
    from glf_jax import config as config_lib  # pylint: disable=g-import-not-at-top
    # Nothing else: no JAX backend, no workdir.
    print(config_lib.describe(config), flush=True)
    return {'mode': 'show_config'}
  check_workdir(workdir)
  from glf_jax.runtime import devices  # deferred: importing JAX before flags parse slows --help
  d = config.distributed
  # num_processes: None = one process, N = explicit; auto_detect: found in the cluster's
  # environment.
  devices.initialize_distributed(d.coordinator_address, -1 if d.auto_detect else d.num_processes,
                                 d.process_id)
  if config.mode == 'study':
    from glf_jax.study import runner as study_runner  # pylint: disable=g-import-not-at-top
    return study_runner.run_study(config, workdir)
  from glf_jax import modes  # pylint: disable=g-import-not-at-top
  return modes.run(config, workdir)


def main(argv):
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]}: give settings as --config.<key>=<value>')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax and grain log every step at INFO
  config = flags.FLAGS.config
  if config.mode != 'show_config':
    from glf_jax.runtime import compile_cache  # pylint: disable=g-import-not-at-top
    from glf_jax.runtime import xla_cpu  # pylint: disable=g-import-not-at-top
    # Before JAX initialises its backend (XLA reads XLA_FLAGS once); a no-op on GPU/TPU.
    xla_cpu.configure(config.xla_cpu_flags)
    # Before the first compilation: a restarted run loads its compiled programs.
    compile_cache.configure(config.compilation_cache_dir)
  if config.mode == 'compile':
    from glf_jax.runtime import targets  # pylint: disable=g-import-not-at-top
    targets.use_host_cpu()  # the target's devices are compile-only; this host compiles
  try:
    summary = run(config, flags.FLAGS.workdir)
  except KeyboardInterrupt:
    # A second Ctrl-C (or one outside training): stop at once, one line, no traceback. os._exit
    # skips the interpreter's teardown, which can crash with orbax's and grain's threads alive.
    print('\naborted: nothing saved since the last checkpoint; run the same command to resume',
          file=sys.stderr, flush=True)
    os._exit(130)  # pylint: disable=protected-access
  except (ValueError, FileNotFoundError, FloatingPointError, OSError) as e:
    # Configuration and data errors: one clear line (printed, not also logged), exit status 1.
    _fail(str(e), e)
  if summary.get('stop_signal') == 'SIGINT':
    sys.exit(130)  # Ctrl-C: saved, but the run did not finish (SIGTERM exits 0 for schedulers)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
