"""Entry point: ``python -m glf_jax.main --config configs/<name>.py [--workdir DIR]``.

The config is locked: overriding or adding an unknown key (``--config.nope=1``) is an error.
"""

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file('config', None, 'Path to a get_config() file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for outputs (summary.json).')
flags.mark_flags_as_required(['config'])

MODES = ('loss_demo',)


def run(config, workdir=None):
  if config.mode not in MODES:
    raise ValueError(f'config.mode must be one of {list(MODES)}, got {config.mode!r}')
  from glf_jax import demo  # deferred: importing JAX before flags parse slows --help
  return demo.run(config, workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  run(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
