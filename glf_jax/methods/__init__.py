"""Methods: one module per method, each defining ``METHOD = Method(...)`` (see ``base.py``).

The package is the registry (``glf_jax.registry``): a new file ``glf_jax/methods/<name>.py`` with a
``METHOD`` is a new method, named in configs as ``objective.name = '<name>[+<constraint>...]'``
(constraints: ``glf_jax.constraints``). The generic training code asks :func:`get` for the record
and never tests a method's name.

    objective = build_objective(objective_config('simsiam+adc'))   # the GLF objective
    loss, aux = objective(outputs, batch)

Imports: losses, constraints, registry.
"""

from __future__ import annotations

import ml_collections

from glf_jax import registry
from glf_jax.constraints import CONSTRAINTS
from glf_jax.losses import glf
from glf_jax.methods.base import Method, RunInfo

METHODS: dict[str, Method] = registry.collect(__name__, 'METHOD', Method)


def parse_name(name: str) -> tuple[str, tuple[str, ...]]:
  """``'simclr+adc'`` -> ``('simclr', ('adc',))``; unknown methods or constraints are refused."""
  return glf.parse_name(name, METHODS, CONSTRAINTS)


def get(name: str) -> Method:
  """The method of an objective name (``'byol+adc'`` -> BYOL's record)."""
  return METHODS[parse_name(name)[0]]


def _terms(name: str) -> list[tuple[str, glf.Term]]:
  method, constraints = parse_name(name)
  return [(method, METHODS[method].term)] + [(c, CONSTRAINTS[c].term) for c in constraints]


def objective_config(name: str = 'simclr') -> ml_collections.ConfigDict:
  """The default ``config.objective`` sub-tree for ``name``: one field per hyperparameter."""
  config = ml_collections.ConfigDict({'name': name})
  for term_name, term in _terms(name):
    config[term_name] = glf.term_config(term)
  return config


def build_objective(config: ml_collections.ConfigDict):
  """``objective(outputs, batch) -> (loss, aux)`` from ``config.objective`` (``glf.compose``).

  Unknown names, unknown keys and out-of-range hyperparameters raise ``ValueError`` here, before
  any tracing: each term checks its own (``Term.check``).
  """
  terms = _terms(config.get('name'))
  stray = sorted(set(config.keys()) - {'name', *METHODS, *CONSTRAINTS})
  if stray:
    raise ValueError(f'unknown key(s) {stray} in objective; allowed: name and the term names '
                     f'{sorted({*METHODS, *CONSTRAINTS})}')
  return glf.compose([(name, term, glf.term_hyperparameters(config, name, term))
                      for name, term in terms])


__all__ = ['METHODS', 'Method', 'RunInfo', 'build_objective', 'get', 'objective_config',
           'parse_name']
