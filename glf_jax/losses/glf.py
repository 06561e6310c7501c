"""The Generalized Learning Framework objective: one aligning term + weighted constraints.

``L = L_align + Σ_k L_constraint_k`` (docs/maths.md §1; each constraint carries its own weights,
e.g. ADC's ν and υ). The aligning term belongs to a method (``glf_jax.methods``: SimCLR's
NT-Xent, BYOL's regression, ...); a constraint (``glf_jax.constraints``: ADC, ...) composes with
every method by name: ``'simclr+adc'``, ``'simsiam+adc'``. ``glf_jax.methods.build_objective(
config.objective)`` assembles the objective::

    objective = glf_jax.methods.build_objective(glf_jax.methods.objective_config('simclr+adc'))
    loss, aux = objective(outputs, batch)   # jittable

``outputs`` is what the method makes of the model's outputs (``z1, z2`` for the pairwise and
constraint terms, ``p1, p2``, targets, prototypes, logits, ...) plus ``prior1, prior2`` (frozen
prior features) for ADC's LPM. ``batch`` holds ``label`` for the supervised terms and ``key``
(a per-step PRNG key) for the terms that draw random numbers.

Each term checks its own hyperparameters (``Term.check``, beside its defaults in its method or
constraint module), once, when the objective is built; inside the objective the losses' own
hyperparameter checks are off (``checks.validated``). The aux rule: a term's loss returns its
statistics under plain names (no ``/``); the objective reports them as ``'<term>/<name>'`` and the
term's value as ``'<term>'`` (a loss that returns a ``/`` key is refused when traced).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections
from ml_collections import config_dict

from glf_jax.losses import checks


@dataclasses.dataclass(frozen=True)
class Term:
  """A loss term of the objective.

  Attributes:
    loss: ``(outputs, batch, **hyperparameters) -> (loss, aux)``.
    defaults: the hyperparameters and their defaults (the term's config sub-tree); ``None``
      means "not set" (e.g. ``block_size``: dense), typed by ``unset_types``.
    check: ``check(hyperparameters, where)`` raises ``ValueError`` naming ``f'{where}.<key>'``
      for a value out of its range; required when the term has hyperparameters.
    needs: keys of ``outputs`` the term reads (checked before tracing), or a function of the
      hyperparameters giving them (a term whose inputs depend on its settings, e.g. ADC's prior).
    needs_labels: whether ``batch['label']`` is read.
    needs_key: whether ``batch['key']`` (a PRNG key) is read.
    unset_types: the config type of each hyperparameter whose default is ``None`` (default
      ``int``), so that ``--config.objective.<term>.<key>=...`` can set it.
  """
  loss: Callable[..., tuple[Any, dict]]
  defaults: dict
  check: Callable[[dict, str], None] | None = None
  needs: tuple[str, ...] | Callable[[dict], tuple[str, ...]] = ('z1', 'z2')
  needs_labels: bool = False
  needs_key: bool = False
  unset_types: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.defaults and self.check is None:
      raise ValueError(f'a term with hyperparameters {sorted(self.defaults)} needs check='
                       '(hyperparameters, where) -> None that validates them')

  def outputs_needed(self, hyper: dict) -> tuple[str, ...]:
    return self.needs(hyper) if callable(self.needs) else self.needs


@dataclasses.dataclass(frozen=True)
class Constraint:
  """A constraining term that composes with every method, named in objectives as
  ``'<method>+<name>'`` (a module of ``glf_jax.constraints`` defining ``CONSTRAINT``)."""
  name: str
  term: Term


def parse_name(name: str, aligning_names, constraint_names) -> tuple[str, tuple[str, ...]]:
  """``'simclr+adc'`` -> ``('simclr', ('adc',))``, with unknown names rejected."""
  if not isinstance(name, str) or not name:
    raise ValueError(f'objective name must be a non-empty string, got {name!r}')
  aligning, *constraints = [part.strip() for part in name.split('+')]
  checks.check_choice('method (objective.name before "+")', aligning, aligning_names)
  for c in constraints:
    checks.check_choice('constraint term (objective.name after "+")', c, constraint_names)
  if len(set(constraints)) != len(constraints):
    raise ValueError(f'objective name {name!r} repeats a constraint')
  return aligning, tuple(constraints)


def term_config(term: Term) -> ml_collections.ConfigDict:
  """The term's config sub-tree: its defaults, ``None`` ones as typed placeholders (so that
  ``--config.objective.adc.block_size=1024`` can set them)."""
  return ml_collections.ConfigDict({
      key: config_dict.placeholder(term.unset_types.get(key, int)) if value is None else value
      for key, value in term.defaults.items()})


def term_hyperparameters(config, term_name: str, term: Term) -> dict:
  """The term's hyperparameters: defaults overridden by ``config[term_name]``, checked by the
  term."""
  given = config.get(term_name)
  given = {} if given is None else dict(given)
  unknown = sorted(set(given) - set(term.defaults))
  if unknown:
    raise ValueError(f'unknown key(s) {unknown} in objective.{term_name}; allowed: '
                     f'{sorted(term.defaults)}')
  hyper = {**term.defaults, **given}
  if term.check is not None:
    term.check(hyper, f'objective.{term_name}')
  return hyper


def compose(terms: list[tuple[str, Term, dict]]) -> Callable[[dict, dict], tuple]:
  """``objective(outputs, batch) -> (loss, aux)``: the sum of ``(name, term, hyperparameters)``.

  ``aux`` holds ``loss``, each term's loss under its name and the term's statistics as
  ``'<term>/<stat>'``. The objective carries ``term_names``, ``needs`` (the output keys its terms
  read), ``needs_labels`` and ``needs_key``.
  """
  needs = {name: term.outputs_needed(hyper) for name, term, hyper in terms}

  def objective(outputs: dict, batch: dict | None = None):
    batch = {} if batch is None else batch
    total = 0.0
    aux = {}
    for name, term, hyper in terms:
      missing = [k for k in needs[name] if k not in outputs]
      if missing:
        raise ValueError(f'objective term {name!r} needs model outputs {missing}; got '
                         f'{sorted(outputs)}')
      for flag, key in ((term.needs_labels, 'label'), (term.needs_key, 'key')):
        if flag and key not in batch:
          raise ValueError(f'objective term {name!r} needs batch["{key}"]')
      with checks.validated():  # hyperparameters were checked when the objective was built
        value, term_aux = term.loss(outputs, batch, **hyper)
      nested = sorted(k for k in term_aux if '/' in k)
      if nested:
        raise ValueError(f'objective term {name!r} returned aux keys {nested}: a loss names its '
                         f"statistics without '/'; the objective reports them as '{name}/<key>'")
      total = total + value
      aux[name] = value
      aux.update({f'{name}/{k}': v for k, v in term_aux.items() if k != name})
    aux['loss'] = total
    return total, aux

  objective.term_names = tuple(name for name, _, _ in terms)
  objective.needs = tuple(dict.fromkeys(k for keys in needs.values() for k in keys))
  objective.needs_labels = any(term.needs_labels for _, term, _ in terms)
  objective.needs_key = any(term.needs_key for _, term, _ in terms)
  return objective
