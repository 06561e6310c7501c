"""Methods: one module per method, each defining ``METHOD = Method(...)`` (see ``base.py``).

The registry is this package's modules: a new file ``glf_jax/methods/<name>.py`` with a
``METHOD`` is a new method, named in configs as ``objective.name = '<name>[+<constraint>...]'``.
The generic training code asks :func:`get` for the record and never tests a method's name.

    objective = build_objective(objective_config('simsiam+adc'))   # the GLF objective
    loss, aux = objective(outputs, batch)
"""

from __future__ import annotations

import importlib
import pkgutil

import ml_collections

from glf_jax.losses import glf
from glf_jax.methods.base import Method, RunInfo

# Modules of this package that hold shared pieces, not methods.
_NOT_METHODS = ('base', 'momentum')


def _discover() -> dict[str, Method]:
  registry = {}
  for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if info.name in _NOT_METHODS:
      continue
    module = importlib.import_module(f'{__name__}.{info.name}')
    method = getattr(module, 'METHOD', None)
    if not isinstance(method, Method):
      raise TypeError(f'{module.__name__} must define METHOD = Method(...)')
    if method.name != info.name:
      raise ValueError(f'{module.__name__} defines METHOD.name={method.name!r}; a method is '
                       f'named like its module')
    registry[method.name] = method
  return registry


METHODS: dict[str, Method] = _discover()


def parse_name(name: str) -> tuple[str, tuple[str, ...]]:
  """``'simclr+adc'`` -> ``('simclr', ('adc',))``; unknown methods or constraints are refused."""
  return glf.parse_name(name, METHODS)


def get(name: str) -> Method:
  """The method of an objective name (``'byol+adc'`` -> BYOL's record)."""
  return METHODS[parse_name(name)[0]]


def objective_config(name: str = 'simclr') -> ml_collections.ConfigDict:
  """The default ``config.objective`` sub-tree for ``name``: one field per hyperparameter."""
  method, constraints = parse_name(name)
  config = ml_collections.ConfigDict({'name': name})
  config[method] = glf.term_config(METHODS[method].term)
  for constraint in constraints:
    config[constraint] = glf.term_config(glf.CONSTRAINT_TERMS[constraint])
  return config


def build_objective(config: ml_collections.ConfigDict):
  """``objective(outputs, batch) -> (loss, aux)`` from ``config.objective`` (``glf.compose``).

  Unknown names, unknown keys and out-of-range hyperparameters raise ``ValueError`` here, before
  any tracing.
  """
  method, constraints = parse_name(config.get('name'))
  stray = sorted(set(config.keys()) - {'name', *METHODS, *glf.CONSTRAINT_TERMS})
  if stray:
    raise ValueError(f'unknown key(s) {stray} in objective; allowed: name and the term names '
                     f'{sorted({*METHODS, *glf.CONSTRAINT_TERMS})}')
  terms = [(method, METHODS[method].term)]
  terms += [(c, glf.CONSTRAINT_TERMS[c]) for c in constraints]
  return glf.compose([(name, term, glf.term_hyperparameters(config, name, term))
                      for name, term in terms])


__all__ = ['METHODS', 'Method', 'RunInfo', 'build_objective', 'get', 'objective_config',
           'parse_name']
