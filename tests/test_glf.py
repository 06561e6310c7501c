"""The GLF objective builder: composition by config, clear errors for bad names and values."""

import jax
import numpy as np
import pytest

from glf_jax import losses
from glf_jax import methods
from glf_jax.constraints import CONSTRAINTS
from glf_jax.losses import checks
from glf_jax.losses import glf
from glf_jax.losses.mocov3 import mocov3
from glf_jax.losses.simsiam import simsiam
from glf_jax.losses.wmse import wmse

RNG = np.random.default_rng(0)
N, D = 6, 5
OUTPUTS = {k: RNG.standard_normal((N, D)).astype(np.float32)
           for k in ('z1', 'z2', 'p1', 'p2', 't1', 't2', 'q1', 'q2', 'k1', 'k2')}
OUTPUTS['prior1'], OUTPUTS['prior2'] = [RNG.standard_normal((N, 9)).astype(np.float32)
                                        for _ in range(2)]
OUTPUTS['prototypes'] = RNG.standard_normal((4, D)).astype(np.float32)
OUTPUTS['logits1'], OUTPUTS['logits2'] = [RNG.standard_normal((N, 3)).astype(np.float32)
                                          for _ in range(2)]
BATCH = {'label': RNG.integers(0, 3, N).astype(np.int32), 'key': jax.random.key(3)}


METHOD_CASES = [
    ('simclr', lambda o, b: losses.nt_xent(o['z1'], o['z2'])),
    ('balanced', lambda o, b: losses.balanced_contrastive(o['z1'], o['z2'])),
    ('nscl', lambda o, b: losses.nscl(o['z1'], o['z2'], b['label'])),
    ('supcon', lambda o, b: losses.supcon(o['z1'], o['z2'], b['label'])),
    ('ce', lambda o, b: losses.cross_entropy(np.concatenate([o['logits1'], o['logits2']]),
                                             np.concatenate([b['label'], b['label']]))),
    ('byol', lambda o, b: losses.byol(o['p1'], o['p2'], o['t1'], o['t2'])),
    ('barlow_twins', lambda o, b: losses.barlow_twins(o['z1'], o['z2'])),
    ('swav', lambda o, b: losses.swav(o['z1'], o['z2'], o['prototypes'])),
    ('simsiam', lambda o, b: simsiam(o['p1'], o['p2'], o['z1'], o['z2'])),
    ('mocov3', lambda o, b: mocov3(o['q1'], o['q2'], o['k1'], o['k2'])),
    ('wmse', lambda o, b: wmse(o['z1'], o['z2'], b['key'], w_size=3)),
    ('vicreg', lambda o, b: losses.vicreg(o['z1'], o['z2'])),
]


@pytest.mark.parametrize('method,direct', METHOD_CASES)
@pytest.mark.parametrize('with_adc', [False, True])
def test_objective_is_aligning_term_plus_constraints(method, direct, with_adc):
  name = method + ('+adc' if with_adc else '')
  config = methods.objective_config(name)
  if method == 'wmse':
    config.wmse.w_size = 3
  objective = methods.build_objective(config)
  loss, aux = jax.jit(objective)(OUTPUTS, BATCH)
  expected = float(direct(OUTPUTS, BATCH)[0])
  np.testing.assert_allclose(aux[method], expected, rtol=1e-6)
  if with_adc:
    adc_value, _ = losses.adc(OUTPUTS['z1'], OUTPUTS['z2'], OUTPUTS['prior1'], OUTPUTS['prior2'])
    np.testing.assert_allclose(aux['adc'], adc_value, rtol=1e-6)
    expected += float(adc_value)
    assert 'adc/dcm' in aux and 'adc/lpm' in aux
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(aux['loss'], loss)


def test_every_method_has_a_test_here():
  assert {method for method, _ in METHOD_CASES} == set(methods.METHODS)


def test_config_overrides_reach_the_losses():
  config = methods.objective_config('balanced+adc')
  config.balanced.alpha = 2.0
  config.balanced.similarity = 'dot'
  config.balanced.block_size = 4
  config.adc.nu, config.adc.upsilon, config.adc.rho = 0.5, 0.0, 7.0
  objective = methods.build_objective(config)
  assert 'prior1' not in objective.needs  # DCM alone (υ = 0) reads no prior
  loss, aux = objective({'z1': OUTPUTS['z1'], 'z2': OUTPUTS['z2']}, BATCH)
  z1, z2 = OUTPUTS['z1'], OUTPUTS['z2']
  expected = (losses.balanced_contrastive(z1, z2, alpha=2.0, similarity='dot')[0]
              + 0.5 * losses.dcm(z1, z2, rho=7.0)[0])
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


@pytest.mark.parametrize('name,match', [
    ('simclrr', 'method'),
    ('simclr+adcc', 'constraint term'),
    ('adc', 'method'),
    ('simclr+adc+adc', 'repeats'),
    ('', 'non-empty'),
])
def test_unknown_names_are_rejected(name, match):
  with pytest.raises(ValueError, match=match):
    methods.objective_config(name)


@pytest.mark.parametrize('term,key,value,match', [
    ('simclr', 'temperature', 0.0, r'simclr.temperature must be a finite number > 0'),
    ('simclr', 'temperature', -1.0, 'temperature'),
    ('simclr', 'similarity', 'cos', r"similarity must be one of \['cosine'"),
    ('adc', 'rho', 2.0, r'rho must be > 2'),
    ('adc', 'rho', 1.5, 'rho'),
    ('adc', 'sigma2', 0.0, 'sigma2'),
    ('adc', 'nu', -0.1, r'nu must be a finite number >= 0'),
    ('adc', 'upsilon', -1.0, 'upsilon'),
])
def test_invalid_hyperparameters_are_rejected_at_build_time(term, key, value, match):
  config = methods.objective_config(f'simclr+adc')
  config[term][key] = value
  with pytest.raises(ValueError, match=match):
    methods.build_objective(config)


def test_balanced_alpha_checked():
  config = methods.objective_config('balanced')
  config.balanced.alpha = 0.0
  with pytest.raises(ValueError, match='alpha'):
    methods.build_objective(config)


def test_unknown_config_keys_are_rejected():
  config = methods.objective_config('simclr')
  config.simclr.temprature = 0.2
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['temprature'\] in objective.simclr"):
    methods.build_objective(config)
  config = methods.objective_config('simclr')
  config.swavv = {}
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['swavv'\]"):
    methods.build_objective(config)


def test_missing_outputs_and_labels_are_named():
  objective = methods.build_objective(methods.objective_config('nscl+adc'))
  with pytest.raises(ValueError, match=r"needs model outputs \['prior1', 'prior2'\]"):
    objective({'z1': OUTPUTS['z1'], 'z2': OUTPUTS['z2']}, BATCH)
  with pytest.raises(ValueError, match=r'needs batch\["label"\]'):
    objective(OUTPUTS, {})


@pytest.mark.parametrize('call,match', [
    (lambda: losses.nt_xent(np.ones((4, 3)), np.ones((5, 3))), 'same shape'),
    (lambda: losses.nt_xent(np.ones((4,)), np.ones((4,))), r'shape \[N, D\]'),
    (lambda: losses.nscl(np.ones((4, 3)), np.ones((4, 3)), np.zeros(3, np.int32)),
     r'labels must have shape \[4\]'),
    (lambda: losses.supcon(np.ones((4, 3)), np.ones((4, 3)), np.zeros(4)), 'integers'),
    (lambda: losses.dcm(np.ones((4, 3)), np.ones((4, 3)), rho=2.0), 'rho'),
    (lambda: losses.dcm(np.ones((4, 3)), np.ones((4, 3)), sigma2=-1.0), 'sigma2'),
    (lambda: losses.dcm(np.ones((4, 3)), np.ones((4, 3)), weights=np.ones(4)), 'weights'),
    (lambda: losses.lpm(np.ones((4, 3)), np.ones((4, 3)), np.ones((3, 2)), np.ones((3, 2))),
     'prior1 must have 4 rows'),
    (lambda: losses.adc(np.ones((4, 3)), np.ones((4, 3)), np.ones((4, 2))), 'both prior1'),
    (lambda: losses.swav(np.ones((4, 3)), np.ones((4, 3)), np.ones((5, 2))), 'prototypes'),
    (lambda: losses.balanced_contrastive(np.ones((4, 3)), np.ones((4, 3)), lam=0.0), 'lam'),
    (lambda: losses.byol(np.ones((4, 3)), np.ones((4, 3)), np.ones((4, 2)), np.ones((4, 2))),
     'same shape'),
])
def test_loss_functions_validate_their_inputs(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_a_new_constraint_plugs_into_every_method(monkeypatch):
  term = glf.Term(lambda o, b, weight: (weight * (o['z1'] ** 2).mean(), {}), dict(weight=1.0),
                  check=lambda h, where: checks.check_nonnegative(f'{where}.weight', h['weight']))
  # A module of glf_jax/constraints defining CONSTRAINT adds one; here the table is patched.
  monkeypatch.setitem(CONSTRAINTS, 'l2_test', glf.Constraint('l2_test', term))
  config = methods.objective_config('byol+l2_test')
  config.l2_test.weight = 3.0
  loss, aux = methods.build_objective(config)(OUTPUTS, BATCH)
  np.testing.assert_allclose(aux['l2_test'], 3.0 * (OUTPUTS['z1'] ** 2).mean(), rtol=1e-6)
  np.testing.assert_allclose(loss, aux['byol'] + aux['l2_test'], rtol=1e-6)


def test_hyperparameters_are_validated_once_when_the_objective_is_built(monkeypatch):
  from glf_jax.losses import checks  # pylint: disable=g-import-not-at-top
  checked = []  # the values a range check really examined
  original = checks._concrete  # pylint: disable=protected-access

  def counting(value):
    result = original(value)
    if result is not None:
      checked.append(value)
    return result
  monkeypatch.setattr(checks, '_concrete', counting)
  objective = methods.build_objective(methods.objective_config('simclr+adc'))
  assert checked  # temperature, nu, upsilon, sigma2, ... when the objective is built
  del checked[:]
  objective(OUTPUTS, BATCH)
  assert not checked  # inside the objective the losses do not check them again
  with pytest.raises(ValueError, match='temperature'):
    losses.nt_xent(OUTPUTS['z1'], OUTPUTS['z2'], temperature=0.0)  # direct callers: checked
