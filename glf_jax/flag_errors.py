"""One line for each command-line mistake: an unknown config key (with "did you mean" or where
the key exists), a value of the wrong type, a missing config file (listing the configs), a config
file that fails to build.

``glf_jax.main`` parses its flags through absl, where ml_collections refuses overrides before
``main`` runs; this module turns what it raised into the message the user sees.
"""

import difflib
import os
import re

from absl import flags

# The configs shipped with the repository (named when a config file is not found).
_REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             'configs')
# '--config.a.b=1', '--config.a.b 1', '--noconfig.flag' (a bool set to False).
_OVERRIDE = re.compile(r'^--?(?:no)?config\.([^=\s]+)')
# absl's IllegalFlagValueError: 'flag --<name>=<value>: <reason>'.
_ILLEGAL_VALUE = re.compile(r'^flag --([^=]+)=(.*?): (.*)$', re.DOTALL)
_TYPE_NAMES = {bool: 'a bool (True or False)', int: 'an int', float: 'a float', str: 'a string',
               tuple: "a tuple (e.g. '(1, 2)', or the flag repeated once per item)"}


def one_line(text: str) -> str:
  return '; '.join(line.strip() for line in str(text).strip().splitlines() if line.strip())


def innermost(error: BaseException) -> BaseException:
  """The first error of a chain (ml_collections re-raises a config file's error as text)."""
  seen = set()
  while id(error) not in seen:
    seen.add(id(error))
    cause = error.__cause__ or error.__context__
    if cause is None:
      break
    error = cause
  return error


def config_spec(argv) -> str | None:
  """The value given to ``--config`` (``path[:arg]``), or None."""
  for i, arg in enumerate(argv[1:], 1):
    if arg == '--':
      break
    match = re.match(r'^--?config(?:=(.*))?$', arg)
    if match:
      if match.group(1) is not None:
        return match.group(1)
      return argv[i + 1] if i + 1 < len(argv) else None
  return None


def missing_required(argv, names) -> str | None:
  """The first of the flags ``names`` that ``argv`` does not give (``--name X``, ``--name=X``),
  read before absl parses: parsing loads the config file, seconds of imports before absl's own
  check. None when all are there, and when ``argv`` asks for help or reads a flag file (absl
  decides then)."""
  given = set()
  for arg in argv[1:]:
    if arg == '--':
      break
    match = re.match(r'^--?([A-Za-z_][\w.]*)', arg)
    if match:
      given.add(match.group(1))
  if given & {'help', 'helpfull', 'helpshort', 'helpxml', 'h', 'flagfile'}:
    return None
  return next((name for name in names if name not in given), None)


def missing_config_message(spec: str) -> str:
  """The error for a config file that does not exist, listing the configs next to it."""
  path = spec.split(':', 1)[0]
  directory = os.path.dirname(path) or '.'
  names = []
  for candidate in (directory, _REPO_CONFIGS):
    if os.path.isdir(candidate):
      names = sorted(n for n in os.listdir(candidate)
                     if n.endswith('.py') and not n.startswith(('_', '.')))
      if names:
        directory = candidate
        break
  listing = (f'; the configs in {directory}/ are: {", ".join(names)}' if names
             else f' (and {directory}/ holds no config files)')
  return f'config file {path} not found{listing}'


def _load_config(spec: str):
  """The config of ``spec`` without the command line's overrides; None if it cannot be built."""
  try:
    config = flags.FLAGS['config'].parser.parse(spec)  # ml_collections' config file parser
    config.get('mode')  # a config that failed to load raises on first access
    return config
  except Exception:  # pylint: disable=broad-except
    return None


def _objective_term_hint(config, term: str) -> str:
  from glf_jax import methods  # pylint: disable=g-import-not-at-top  # heavy (JAX); errors only
  from glf_jax.constraints import CONSTRAINTS  # pylint: disable=g-import-not-at-top
  name = config.objective.get('name')
  if term in methods.METHODS:
    where = f'configs/{term}.py'
  elif term in CONSTRAINTS:
    where = f'a method\'s config with the {term!r} flag, e.g. configs/simclr.py:{term}'
  else:
    return ''
  return (f'this config (objective {name!r}) has no settings for the objective term {term!r}: '
          f'they exist only in configs built for it; start from {where}')


def _method_settings_hint(config, key: str) -> str:
  from glf_jax import methods  # pylint: disable=g-import-not-at-top
  owners = sorted(m for m, record in methods.METHODS.items() if key in record.settings)
  if not owners:
    return ''
  own = sorted(config.method.keys())
  return (f'config.method holds the settings of this config\'s method '
          f'({own if own else "none"}); {key!r} belongs to {", ".join(owners)}: start from '
          f'configs/{owners[0]}.py')


def unknown_key_message(config, key: str) -> str | None:
  """Why ``key`` (dotted, without ``config.``) cannot be set in ``config``; None if it can."""
  node, parts = config, key.split('.')
  for depth, part in enumerate(parts):
    prefix = '.'.join(parts[:depth])
    if not hasattr(node, 'keys'):
      return (f'unknown config key {key}: {prefix} is a value ({node!r}), not a group of '
              'settings')
    if part in node:
      node = node[part]
      continue
    hint = ''
    if depth == 1 and parts[0] == 'objective':
      hint = _objective_term_hint(config, part)
    elif depth == 1 and parts[0] == 'method':
      hint = _method_settings_hint(config, part)
    if hint:
      return f'unknown config key {key}; {hint}'
    keys = sorted(node.keys())
    close = difflib.get_close_matches(part, keys, n=1)
    if close:
      return f'unknown config key {key}; did you mean {".".join([*parts[:depth], close[0]])}?'
    return (f'unknown config key {key}; {prefix or "the config"} has the keys '
            f'{", ".join(keys) or "(none)"}')
  return None


def _field_type(config, key: str):
  node, parts = config, key.split('.')
  try:
    for part in parts[:-1]:
      node = node[part]
    return node.get_type(parts[-1])
  except Exception:  # pylint: disable=broad-except
    return None


def flag_error_message(error: BaseException, argv) -> str:
  """One line for an error of the command line's parsing (``error`` as absl / ml_collections
  raised it for ``argv``)."""
  spec = config_spec(argv)
  if spec and not os.path.isfile(spec.split(':', 1)[0]):
    return missing_config_message(spec)
  config = _load_config(spec) if spec else None
  if config is not None:
    for arg in argv[1:]:
      match = _OVERRIDE.match(arg)
      message = match and unknown_key_message(config, match.group(1))
      if message:
        return message
  match = _ILLEGAL_VALUE.match(str(error))
  if isinstance(error, flags.IllegalFlagValueError) and match:
    name, value, reason = match.groups()
    if value == 'None' and 'must have a value other than None' in reason:
      return f'--{name} is required'
    if name == 'config':  # get_config() itself failed: its own error, not ml_collections' text
      first = innermost(error)
      return f'config {value}: {one_line(f"{type(first).__name__}: {first}")}'
    if name.startswith('config.') and config is not None:
      wanted = _TYPE_NAMES.get(_field_type(config, name[len('config.'):]))
      if wanted:
        return f'--{name}={value}: {name[len("config."):]} takes {wanted}, got {value!r}'
    return f'--{name}={value}: {one_line(reason)}'
  if spec and config is None:  # the config file itself raised (e.g. a NameError in it)
    first = innermost(error)
    return (f'config {spec}: {one_line(f"{type(first).__name__}: {first}")} '
            '(GLF_JAX_TRACEBACK=1 shows where)')
  return one_line(error)
