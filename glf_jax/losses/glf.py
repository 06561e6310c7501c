"""The Generalized Learning Framework objective: one aligning term + weighted constraints.

``L = L_align + Σ_k L_constraint_k`` (SPEC §1; each constraint carries its own weights, e.g. ADC's
ν and υ). A method is named ``'<aligning>[+<constraint>...]'`` — ``simclr``, ``simclr+adc``,
``byol+adc``, ``barlow_twins+adc``, ``swav+adc``, ``balanced``, ``nscl`` — and built from an
``ml_collections.ConfigDict``::

    config = glf_jax.losses.glf.objective_config('simclr+adc')
    config.adc.nu = 0.5
    objective = glf_jax.losses.build_objective(config)
    loss, aux = objective(outputs, batch)   # jittable

``outputs`` is the model's dict: ``z1, z2`` (projections of the two views) for the pairwise and
constraint terms, ``p1, p2, t1, t2`` for BYOL (online predictions, target projections),
``prototypes`` for SwAV, ``prior1, prior2`` (frozen prior features) for ADC's LPM, ``logits`` for
``ce``. ``batch['label']`` feeds the supervised terms. Adding ADC (or any registered constraint)
to a method is a config change only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections

from glf_jax.losses import checks
from glf_jax.losses.adc import adc
from glf_jax.losses.barlow_twins import barlow_twins
from glf_jax.losses.byol import byol
from glf_jax.losses.contrastive import (balanced_contrastive, cross_entropy, nscl, nt_xent,
                                        supcon)
from glf_jax.losses.similarity import SIMILARITIES
from glf_jax.losses.swav import swav


@dataclasses.dataclass(frozen=True)
class Term:
  """A loss term of the objective.

  Attributes:
    loss: ``(outputs, batch, **hyperparameters) -> (loss, aux)``.
    defaults: the hyperparameters and their defaults (the term's config sub-tree).
    needs: keys of ``outputs`` the term reads (checked before tracing).
    needs_labels: whether ``batch['label']`` is read.
  """
  loss: Callable[..., tuple[Any, dict]]
  defaults: dict
  needs: tuple[str, ...] = ('z1', 'z2')
  needs_labels: bool = False


def _dense_if_zero(hyper):
  """Configs say ``block_size=0`` for the dense form (ConfigDict fields keep one type)."""
  hyper = dict(hyper)
  if hyper.get('block_size') == 0:
    hyper['block_size'] = None
  if hyper.get('beta') == 0:
    hyper['beta'] = None
  return hyper


_PAIRWISE = dict(similarity='cosine', block_size=0)

ALIGNING_TERMS: dict[str, Term] = {
    'simclr': Term(lambda o, b, **h: nt_xent(o['z1'], o['z2'], **h),
                   dict(temperature=0.5, **_PAIRWISE)),
    'balanced': Term(lambda o, b, **h: balanced_contrastive(o['z1'], o['z2'], **h),
                     dict(alpha=4.0, lam=2.0, include_positive=False, **_PAIRWISE)),
    'nscl': Term(lambda o, b, **h: nscl(o['z1'], o['z2'], b['label'], **h),
                 dict(temperature=0.5, **_PAIRWISE), needs_labels=True),
    'supcon': Term(lambda o, b, **h: supcon(o['z1'], o['z2'], b['label'], **h),
                   dict(temperature=0.1, **_PAIRWISE), needs_labels=True),
    'ce': Term(lambda o, b, **h: cross_entropy(o['logits'], b['label'], **h),
               dict(label_smoothing=0.0), needs=('logits',), needs_labels=True),
    'byol': Term(lambda o, b: byol(o['p1'], o['p2'], o['t1'], o['t2']), {},
                 needs=('p1', 'p2', 't1', 't2')),
    'barlow_twins': Term(lambda o, b, **h: barlow_twins(o['z1'], o['z2'], **h),
                         dict(lambda_offdiag=5e-3)),
    'swav': Term(lambda o, b, **h: swav(o['z1'], o['z2'], o['prototypes'], **h),
                 dict(temperature=0.1, epsilon=0.05, sinkhorn_iters=3),
                 needs=('z1', 'z2', 'prototypes')),
}


def _adc_term(outputs, batch, *, use_prior, **hyper):
  del batch
  if use_prior:
    return adc(outputs['z1'], outputs['z2'], outputs['prior1'], outputs['prior2'], **hyper)
  return adc(outputs['z1'], outputs['z2'], **hyper)


CONSTRAINT_TERMS: dict[str, Term] = {
    # use_prior=False is DCM alone (unit weights); True adds LPM and the entropy weights.
    'adc': Term(_adc_term, dict(nu=0.1, upsilon=0.1, sigma2=0.5, sigma2_prior=0.5, rho=5.0,
                                beta=0.0, use_prior=True, block_size=0)),
}


def register_constraint(name: str, term: Term) -> None:
  """Makes ``'<method>+name'`` available to every method."""
  if name in CONSTRAINT_TERMS or name in ALIGNING_TERMS:
    raise ValueError(f'a term named {name!r} already exists')
  CONSTRAINT_TERMS[name] = term


def parse_name(name: str) -> tuple[str, tuple[str, ...]]:
  """``'simclr+adc'`` -> ``('simclr', ('adc',))``, with unknown names rejected."""
  if not isinstance(name, str) or not name:
    raise ValueError(f'objective name must be a non-empty string, got {name!r}')
  aligning, *constraints = [part.strip() for part in name.split('+')]
  checks.check_choice('aligning term (objective.name before "+")', aligning, ALIGNING_TERMS)
  for c in constraints:
    checks.check_choice('constraint term (objective.name after "+")', c, CONSTRAINT_TERMS)
  if len(set(constraints)) != len(constraints):
    raise ValueError(f'objective name {name!r} repeats a constraint')
  return aligning, tuple(constraints)


def objective_config(name: str = 'simclr') -> ml_collections.ConfigDict:
  """The default ``config.objective`` sub-tree for ``name``: one field per hyperparameter."""
  aligning, constraints = parse_name(name)
  config = ml_collections.ConfigDict({'name': name})
  for term_name in (aligning, *constraints):
    term = ALIGNING_TERMS.get(term_name) or CONSTRAINT_TERMS[term_name]
    config[term_name] = ml_collections.ConfigDict(term.defaults)
  return config


_RANGE_CHECKS = {
    'temperature': checks.check_positive,
    'alpha': checks.check_positive,
    'lam': checks.check_positive,
    'sigma2': checks.check_positive,
    'sigma2_prior': checks.check_positive,
    'epsilon': checks.check_positive,
    'nu': checks.check_nonnegative,
    'upsilon': checks.check_nonnegative,
    'lambda_offdiag': checks.check_nonnegative,
    'beta': checks.check_nonnegative,
    'block_size': checks.check_nonnegative,
    'label_smoothing': checks.check_nonnegative,
}


def _term_hyperparameters(config, term_name, term) -> dict:
  """The term's hyperparameters: defaults overridden by ``config[term_name]``, validated."""
  given = config.get(term_name)
  given = {} if given is None else dict(given)
  unknown = sorted(set(given) - set(term.defaults))
  if unknown:
    raise ValueError(f'unknown key(s) {unknown} in objective.{term_name}; allowed: '
                     f'{sorted(term.defaults)}')
  hyper = {**term.defaults, **given}
  for key, value in hyper.items():
    if key in _RANGE_CHECKS:
      _RANGE_CHECKS[key](f'objective.{term_name}.{key}', value)
  if 'rho' in hyper:
    checks.check_greater(f'objective.{term_name}.rho', hyper['rho'], 2.0)
  if 'similarity' in hyper:
    checks.check_choice(f'objective.{term_name}.similarity', hyper['similarity'], SIMILARITIES)
  return _dense_if_zero(hyper)


def build_objective(config: ml_collections.ConfigDict) -> Callable[[dict, dict], tuple]:
  """Builds ``objective(outputs, batch) -> (loss, aux)`` from ``config.objective``.

  ``aux`` holds ``loss``, each term's loss under its name and the term's statistics as
  ``'<term>/<stat>'``. Unknown names, unknown keys and out-of-range hyperparameters raise
  ``ValueError`` here, before any tracing.
  """
  aligning, constraints = parse_name(config.get('name'))
  term_names = (aligning, *constraints)
  stray = sorted(set(config.keys()) - {'name', *ALIGNING_TERMS, *CONSTRAINT_TERMS})
  if stray:
    raise ValueError(f'unknown key(s) {stray} in objective; allowed: name and the term names '
                     f'{sorted({*ALIGNING_TERMS, *CONSTRAINT_TERMS})}')
  terms = []
  for name in term_names:
    term = ALIGNING_TERMS.get(name) if name == aligning else CONSTRAINT_TERMS[name]
    terms.append((name, term, _term_hyperparameters(config, name, term)))

  def objective(outputs: dict, batch: dict | None = None):
    batch = {} if batch is None else batch
    total = 0.0
    aux = {}
    for name, term, hyper in terms:
      needs = term.needs + (('prior1', 'prior2') if hyper.get('use_prior') else ())
      missing = [k for k in needs if k not in outputs]
      if missing:
        raise ValueError(f'objective term {name!r} needs model outputs {missing}; got '
                         f'{sorted(outputs)}')
      if term.needs_labels and 'label' not in batch:
        raise ValueError(f'objective term {name!r} needs batch["label"]')
      value, term_aux = term.loss(outputs, batch, **hyper)
      total = total + value
      aux[name] = value
      aux.update({f'{name}/{k}': v for k, v in term_aux.items() if k != name})
    aux['loss'] = total
    return total, aux

  objective.term_names = term_names
  return objective
