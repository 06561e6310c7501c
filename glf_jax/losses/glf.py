"""The Generalized Learning Framework objective: one aligning term + weighted constraints.

``L = L_align + Σ_k L_constraint_k`` (SPEC §1; each constraint carries its own weights, e.g. ADC's
ν and υ). The aligning term belongs to a method (``glf_jax.methods``: SimCLR's NT-Xent, BYOL's
regression, ...); the constraints registered here (ADC, or any registered with
:func:`register_constraint`) compose with every method by name: ``'simclr+adc'``,
``'simsiam+adc'``. ``glf_jax.methods.build_objective(config.objective)`` assembles the objective::

    objective = glf_jax.methods.build_objective(glf_jax.methods.objective_config('simclr+adc'))
    loss, aux = objective(outputs, batch)   # jittable

``outputs`` is what the method makes of the model's outputs (``z1, z2`` for the pairwise and
constraint terms, ``p1, p2``, targets, prototypes, logits, ...) plus ``prior1, prior2`` (frozen
prior features) for ADC's LPM. ``batch`` holds ``label`` for the supervised terms and ``key``
(a per-step PRNG key) for the terms that draw random numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections
from ml_collections import config_dict

from glf_jax.losses import checks
from glf_jax.losses.adc import adc
from glf_jax.losses.similarity import SIMILARITIES


@dataclasses.dataclass(frozen=True)
class Term:
  """A loss term of the objective.

  Attributes:
    loss: ``(outputs, batch, **hyperparameters) -> (loss, aux)``.
    defaults: the hyperparameters and their defaults (the term's config sub-tree).
    needs: keys of ``outputs`` the term reads (checked before tracing), or a function of the
      hyperparameters giving them (a term whose inputs depend on its settings, e.g. ADC's prior).
    needs_labels: whether ``batch['label']`` is read.
    needs_key: whether ``batch['key']`` (a PRNG key) is read.
  """
  loss: Callable[..., tuple[Any, dict]]
  defaults: dict
  needs: tuple[str, ...] | Callable[[dict], tuple[str, ...]] = ('z1', 'z2')
  needs_labels: bool = False
  needs_key: bool = False

  def outputs_needed(self, hyper: dict) -> tuple[str, ...]:
    return self.needs(hyper) if callable(self.needs) else self.needs


def _adc_needs(hyper):
  # The LPM (υ > 0) and the entropy-weighted DCM read the prior; DCM alone does not (SPEC §3).
  with_prior = hyper['upsilon'] > 0 or hyper['entropy_weights_without_lpm']
  return ('z1', 'z2', 'prior1', 'prior2') if with_prior else ('z1', 'z2')


def _adc_term(outputs, batch, **hyper):
  del batch
  return adc(outputs['z1'], outputs['z2'], outputs.get('prior1'), outputs.get('prior2'), **hyper)


CONSTRAINT_TERMS: dict[str, Term] = {
    'adc': Term(_adc_term, dict(nu=0.1, upsilon=0.1, sigma2=0.5, sigma2_prior=0.5, rho=5.0,
                                beta=None, entropy_weights_without_lpm=False, block_size=None),
                needs=_adc_needs),
}


def register_constraint(name: str, term: Term) -> None:
  """Makes ``'<method>+name'`` available to every method."""
  if name in CONSTRAINT_TERMS:
    raise ValueError(f'a constraint named {name!r} already exists')
  CONSTRAINT_TERMS[name] = term


def parse_name(name: str, aligning_names) -> tuple[str, tuple[str, ...]]:
  """``'simclr+adc'`` -> ``('simclr', ('adc',))``, with unknown names rejected."""
  if not isinstance(name, str) or not name:
    raise ValueError(f'objective name must be a non-empty string, got {name!r}')
  aligning, *constraints = [part.strip() for part in name.split('+')]
  checks.check_choice('method (objective.name before "+")', aligning, aligning_names)
  for c in constraints:
    checks.check_choice('constraint term (objective.name after "+")', c, CONSTRAINT_TERMS)
  if len(set(constraints)) != len(constraints):
    raise ValueError(f'objective name {name!r} repeats a constraint')
  return aligning, tuple(constraints)


# Range checks by hyperparameter name, shared by every term (the losses run the same checks for
# direct callers; inside an objective they are done once, here).
_RANGE_CHECKS = {
    'temperature': checks.check_positive,
    'alpha': checks.check_positive,
    'lam': checks.check_positive,
    'sigma2': checks.check_positive,
    'sigma2_prior': checks.check_positive,
    'epsilon': checks.check_positive,
    'eps': checks.check_nonnegative,
    'nu': checks.check_nonnegative,
    'upsilon': checks.check_nonnegative,
    'lambda_offdiag': checks.check_nonnegative,
    'label_smoothing': checks.check_nonnegative,
}
_OPTIONAL_POSITIVE_INTS = ('block_size',)
_POSITIVE_INTS = ('sinkhorn_iters', 'w_size', 'w_iter')


# Hyperparameters whose default is None ("not set": dense form, β = M - 1) and the type a config
# override of them has.
_OPTIONAL_TYPES = {'block_size': int, 'beta': float}


def term_config(term: Term) -> ml_collections.ConfigDict:
  """The term's config sub-tree: its defaults, ``None`` ones as typed placeholders (so that
  ``--config.objective.adc.block_size=1024`` can set them)."""
  return ml_collections.ConfigDict({
      key: config_dict.placeholder(_OPTIONAL_TYPES.get(key, int)) if value is None else value
      for key, value in term.defaults.items()})


def term_hyperparameters(config, term_name: str, term: Term) -> dict:
  """The term's hyperparameters: defaults overridden by ``config[term_name]``, validated."""
  given = config.get(term_name)
  given = {} if given is None else dict(given)
  unknown = sorted(set(given) - set(term.defaults))
  if unknown:
    raise ValueError(f'unknown key(s) {unknown} in objective.{term_name}; allowed: '
                     f'{sorted(term.defaults)}')
  hyper = {**term.defaults, **given}
  for key, value in hyper.items():
    where = f'objective.{term_name}.{key}'
    if key in _RANGE_CHECKS:
      _RANGE_CHECKS[key](where, value)
    elif key in _POSITIVE_INTS or (key in _OPTIONAL_POSITIVE_INTS and value is not None):
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{where} must be an int >= 1{" or None" * (key in _OPTIONAL_POSITIVE_INTS)}'
                         f', got {value!r}')
  if hyper.get('beta') is not None:
    checks.check_positive(f'objective.{term_name}.beta', hyper['beta'])
  if 'rho' in hyper:
    checks.check_greater(f'objective.{term_name}.rho', hyper['rho'], 2.0)
  if 'similarity' in hyper:
    checks.check_choice(f'objective.{term_name}.similarity', hyper['similarity'], SIMILARITIES)
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
