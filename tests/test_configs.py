"""Every config in configs/ loads, validates and traces one train step (shrunk to a tiny model)."""

import json
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glf_jax import config as config_lib
from glf_jax import methods
from glf_jax import prior as prior_lib
from glf_jax.train.setup import build_training

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG_FILES = sorted((ROOT / 'configs').glob('*.py'))
METHOD_CONFIGS = [ROOT / 'configs' / f'{name}.py' for name in sorted(methods.METHODS)]


def _load(path, arg=None):
  spec = importlib.util.spec_from_file_location(f'config_{path.stem}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.__doc__ and 'python -m glf_jax.main' in module.__doc__, (
      f'{path.name}: the docstring must give the command that runs it')
  return module.get_config(arg) if arg is not None else module.get_config()


def _trace_one_step(config):
  config = config_lib.tiny(config)
  for view in (config.augment.view1, config.augment.view2):
    view.image_size = 16
  config.train.batch_size = 8
  if 'wmse' in config.objective:
    config.objective.wmse.w_size = 4
  config_lib.validate(config)
  batch = {'image': jax.ShapeDtypeStruct((8, 20, 20, 3), jnp.uint8),
           'label': jax.ShapeDtypeStruct((8,), jnp.int32)}
  training = build_training(config, steps_per_epoch=5, num_classes=config.model.num_classes or 10,
                            abstract=True)
  prior_apply, prior_state = prior_lib.build_prior(config, training.objective)
  new_state, metrics = jax.eval_shape(training.train_step(prior_apply), training.state, batch,
                                      prior_state)
  assert jax.tree.structure(new_state) == jax.tree.structure(training.state)
  assert metrics['loss'].shape == ()


@pytest.mark.parametrize('path', CONFIG_FILES, ids=lambda p: p.stem)
def test_config_loads_and_traces_one_step(path):
  _trace_one_step(_load(path))


def test_every_method_has_a_config_file():
  assert all(path.is_file() for path in METHOD_CONFIGS)


@pytest.mark.parametrize('path', METHOD_CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize('arg', ['adc', 'cifar100', 'imagenet100,adc,resnet50'])
def test_method_config_arguments(path, arg):
  config = _load(path, arg)
  method = path.stem
  assert config.objective.name == method + ('+adc' if 'adc' in arg else '')
  if 'adc' in arg:
    assert config.objective.adc.nu == 0.1 and config.objective.adc.upsilon == 0.1
    assert config.prior.kind == 'pixels'
  imagenet = 'imagenet100' in arg
  dataset = next((d for d in ('imagenet100', 'cifar100') if d in arg), 'cifar10')
  assert config.data.name == dataset
  assert config.model.arch == ('resnet50' if 'resnet50' in arg else 'resnet18')
  assert config.model.stem == ('imagenet' if imagenet else 'cifar')
  assert config.eval.transform.crop_fraction == (0.875 if imagenet else 1.0)
  if method == 'ce':
    assert config.model.num_classes == (10 if dataset == 'cifar10' else 100)
  if arg == 'adc':  # trace one of them per method (the others share the code path)
    _trace_one_step(config)


def test_bad_arguments_are_refused():
  path = ROOT / 'configs' / 'simclr.py'
  with pytest.raises(ValueError, match='unknown config argument'):
    _load(path, 'resnet51')
  with pytest.raises(ValueError, match='twice'):
    _load(path, 'cifar10,cifar100')


def test_paper_hyperparameters():
  config = _load(ROOT / 'configs' / 'simclr.py', 'adc')
  assert config.model.arch == 'resnet18' and config.train.batch_size == 512
  assert config.optim.name == 'lars' and config.model.stem == 'cifar'
  assert config.objective.simclr.temperature == 0.2
  byol = _load(ROOT / 'configs' / 'byol.py')
  assert byol.model.predictor_layers == 2 and byol.method.ema_base == 0.99
  assert byol.augment.view1.blur_prob == 1.0 and byol.augment.view2.solarize_prob == 0.2
  assert _load(ROOT / 'configs' / 'byol.py', 'imagenet100').method.ema_base == 0.996
  simsiam = _load(ROOT / 'configs' / 'simsiam.py')
  assert (simsiam.optim.name, simsiam.optim.base_learning_rate, simsiam.optim.weight_decay,
          simsiam.train.epochs) == ('sgd', 0.03, 5e-4, 800)
  mocov3 = _load(ROOT / 'configs' / 'mocov3.py')
  assert mocov3.objective.mocov3.temperature == 0.2 and mocov3.method.ema_base == 0.99
  assert mocov3.augment.view1 != mocov3.augment.view2  # BYOL's asymmetric views
  # Methods without settings have none in their config.
  assert not _load(ROOT / 'configs' / 'simclr.py').method.keys()


def test_contrastive_family_configs_share_the_encoder():
  models = {name: _load(ROOT / 'configs' / f'{name}.py').model.to_dict()
            for name in ('simclr', 'nscl', 'supcon', 'balanced', 'ce')}
  ce = models.pop('ce')
  assert ce.pop('num_classes') == 10
  for model in models.values():
    model.pop('num_classes')
    assert model == ce


def test_changed_config_is_reported_by_key():
  a = config_lib.base_config('simclr', 'cifar10')
  b = config_lib.base_config('simclr', 'cifar10')
  b.optim.base_learning_rate = 9.0
  b.mode = 'eval'                  # run-control fields do not count as changes
  assert config_lib.config_differences(config_lib.to_json(a), b) == ['optim.base_learning_rate']


@pytest.mark.parametrize('field,value,message', [
    ('mode', 'dance', 'config.mode'),
    ('train.batch_size', 0, 'train.batch_size'),
    ('train.num_steps', 0, 'train.num_steps'),
    ('checkpoint.keep', 0, 'checkpoint.keep'),
    ('method.ema_base', 1.5, 'ema_base'),
    ('eval.evaluators', ('linear', 'magic'), 'magic'),
    ('augment.view1.flip_prob', 2.0, 'flip_prob'),
    ('eval.embedding_examples', -1, 'eval.embedding_examples'),
])
def test_bad_run_settings_are_rejected(field, value, message):
  config = config_lib.base_config('byol', 'digits')
  *parents, key = field.split('.')
  node = config
  for parent in parents:
    node = node[parent]
  node[key] = value
  with pytest.raises(ValueError, match=message):
    config_lib.validate(config)


def test_unknown_dataset_and_method():
  with pytest.raises(ValueError, match='dataset'):
    config_lib.base_config('simclr', 'mnist')
  with pytest.raises(ValueError, match='method'):
    config_lib.base_config('moco', 'cifar10')
  np.testing.assert_equal(
      config_lib.parse_config_arg('', choices=dict(flags=('adc',)), defaults={}), {'adc': False})


def test_config_differences_ignores_new_keys_that_are_not_set():
  """A run saved before a key existed resumes when the new key is None (its feature off)."""
  from glf_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config('simclr', 'digits', 'resnet_tiny')
  saved = json.loads(config_lib.to_json(config))
  del saved['data']['num_classes_subset']  # None in the current config
  assert config_lib.config_differences(json.dumps(saved), config) == []
  config.data.num_classes_subset = 3
  assert config_lib.config_differences(json.dumps(saved), config) == ['data.num_classes_subset']
