"""The full config tree of a run, with defaults; ``configs/*.py`` start from :func:`base_config`.

Sub-trees (each module reads only its own): ``data``, ``augment``, ``model``, ``objective``,
``optim``, ``prior`` (ADC's LPM), ``byol``, ``swav``, ``train``, ``checkpoint``, ``eval``,
``distributed``; top-level ``mode``, ``seed``, ``allow_config_change``, ``xla_cpu_flags``.

``base_config(method='simclr+adc', dataset='cifar10', arch='resnet18')`` gives the paper's
settings for that method, dataset and network; configs override what differs.
"""

from __future__ import annotations

import json

import ml_collections

from glf_jax.data import augment, sources
from glf_jax.evaluate.finetune import default_finetune_config
from glf_jax.evaluate.report import default_probe_config
from glf_jax.losses import objective_config
from glf_jax.models import default_model_config
from glf_jax.train.optim import default_optim_config
from glf_jax.train.prior import default_prior_config

MODES = ('pretrain', 'eval', 'linear_probe', 'knn', 'finetune')
# Augmentation statistics family of each source (mean/std and the CIFAR or ImageNet recipe).
_AUGMENT_FAMILY = {'cifar10': 'cifar10', 'cifar100': 'cifar100', 'stl10': 'imagenet',
                   'imagenet2012': 'imagenet', 'imagenet100': 'imagenet',
                   'image_folder': 'imagenet', 'digits': 'cifar10'}
_IMAGE_SIZE = {'cifar10': 32, 'cifar100': 32, 'stl10': 96, 'imagenet2012': 224,
               'imagenet100': 224, 'image_folder': 224, 'digits': 16}


def augment_config(method: str, dataset: str, image_size: int) -> ml_collections.ConfigDict:
  """SimCLR's symmetric recipe, or BYOL's asymmetric one for BYOL-family methods."""
  family = _AUGMENT_FAMILY[dataset]
  recipe = augment.byol_config if method.split('+')[0] == 'byol' else augment.simclr_config
  return recipe(image_size, dataset=family)


def default_eval_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      data=ml_collections.ConfigDict(dict(   # '' name: the pretraining data
          name='', data_dir='', root='', cache_dir='', image_size=0, skip_corrupt=False)),
      train_split='train',
      test_split='test',
      batch_size=256,
      max_train_examples=0,       # 0: all (features of at most this many train rows)
      max_test_examples=0,
      crop_fraction=1.0,          # eval transform: centre crop fraction (0.875 for ImageNet)
      probe=default_probe_config(),  # linear probe and kNN settings
      alignment_examples=512,     # test images whose two views give alignment / uniformity
      compare_random_init=False,  # also evaluate the same network at initialisation
      checkpoint_dir='',          # eval modes: the run to load ('' = --workdir)
      # Fine-tuning / transfer; image_size, mean and std are taken from the pretrained run.
      finetune=default_finetune_config(),
  ))


def base_config(method: str = 'simclr+adc', dataset: str = 'cifar10',
                arch: str = 'resnet18') -> ml_collections.ConfigDict:
  """A complete run config for ``method`` (an objective name) on ``dataset`` with ``arch``."""
  if dataset not in sources.SOURCE_NAMES:
    raise ValueError(f'dataset must be one of {list(sources.SOURCE_NAMES)}, got {dataset!r}')
  c = ml_collections.ConfigDict()
  c.mode = 'pretrain'
  c.seed = 0
  c.allow_config_change = False
  # XLA CPU flag preset (glf_jax.xla_cpu): 'fast' halves a ResNet step on CPU; 'none' for XLA's
  # defaults. Ignored on GPU/TPU.
  c.xla_cpu_flags = 'fast'

  c.data = sources.default_data_config(dataset)
  image_size = _IMAGE_SIZE[dataset]  # of the views (the data keeps its own size by default)
  c.augment = augment_config(method, dataset, image_size)
  stem = 'cifar' if image_size <= 64 else 'imagenet'
  c.model = default_model_config(method, arch, stem=stem)
  c.objective = objective_config(method)
  c.optim = default_optim_config('lars')
  c.prior = default_prior_config()
  c.byol = ml_collections.ConfigDict(dict(ema_base=0.99))
  c.swav = ml_collections.ConfigDict(dict(freeze_prototypes_epochs=1.0))

  c.train = ml_collections.ConfigDict(dict(
      batch_size=512,             # global: per process x processes
      epochs=1000,
      num_steps=0,                # > 0 overrides epochs
      log_every=50,
      online_probe_lr=1e-3,
      max_nonfinite_in_a_row=5,   # stop after this many skipped (non-finite) steps in a row
      worker_count=0,             # grain worker processes (0: threads)
      num_devices=0,              # 0: every device
      eval_after=True,            # evaluate the encoder when pretraining ends
  ))
  c.checkpoint = ml_collections.ConfigDict(dict(
      every_steps=1000, keep=3, async_save=True))
  c.eval = default_eval_config()
  # num_processes: 0 = one process; N = explicit (with coordinator_address and process_id);
  # -1 = detect the cluster (SLURM, TPU pod, Open MPI) with jax.distributed.initialize().
  c.distributed = ml_collections.ConfigDict(dict(
      coordinator_address='', num_processes=0, process_id=-1))
  return c


def tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to a tiny model and few steps (tests, smoke runs); returns it."""
  config.model.arch = 'resnet_tiny'
  config.model.width_multiplier = 1
  for field, value in (('projector_hidden_dim', 32), ('projection_dim', 16),
                       ('predictor_hidden_dim', 32), ('num_prototypes', 10)):
    if config.model[field]:
      config.model[field] = value
  return config


def to_json(config: ml_collections.ConfigDict) -> str:
  return config.to_json_best_effort(sort_keys=True)


def flatten(tree, prefix: str = '') -> dict:
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      out.update(flatten(value, name + '.'))
    else:
      out[name] = value
  return out


def config_differences(saved_json: str, config: ml_collections.ConfigDict,
                       ignore=('allow_config_change', 'mode', 'eval',
                               'xla_cpu_flags')) -> list[str]:
  """Keys whose values differ between a saved run's config and ``config`` (dotted names)."""
  old = flatten(json.loads(saved_json))
  new = flatten(json.loads(to_json(config)))
  def ignored(key):
    return any(key == i or key.startswith(i + '.') for i in ignore)
  keys = sorted(k for k in set(old) | set(new) if not ignored(k))
  return [k for k in keys if old.get(k, '<absent>') != new.get(k, '<absent>')]


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the run-level fields (the sub-modules validate their own when they build)."""
  if config.mode not in MODES:
    raise ValueError(f'config.mode must be one of {list(MODES)}, got {config.mode!r}')
  t = config.train
  if t.batch_size < 1:
    raise ValueError(f'train.batch_size must be >= 1, got {t.batch_size}')
  if t.epochs <= 0 and t.num_steps <= 0:
    raise ValueError('set train.epochs > 0 or train.num_steps > 0')
  if t.max_nonfinite_in_a_row < 1:
    raise ValueError(f'train.max_nonfinite_in_a_row must be >= 1, got '
                     f'{t.max_nonfinite_in_a_row}')
  if config.checkpoint.every_steps < 1 or config.checkpoint.keep < 1:
    raise ValueError('checkpoint.every_steps and checkpoint.keep must be >= 1')
  if config.seed < 0:
    raise ValueError(f'seed must be >= 0, got {config.seed}')


# Per-method CIFAR recipes (solo-learn's tuned ResNet-18 settings; SPEC §2 defaults otherwise).
_METHOD_RECIPES = {
    'simclr': dict(optim=dict(base_learning_rate=0.4, weight_decay=1e-5),
                   objective=dict(simclr=dict(temperature=0.2)),
                   model=dict(projection_dim=256)),
    'balanced': dict(optim=dict(base_learning_rate=0.4, weight_decay=1e-5),
                     model=dict(projection_dim=256)),
    'nscl': dict(optim=dict(base_learning_rate=0.4, weight_decay=1e-5),
                 objective=dict(nscl=dict(temperature=0.5)), model=dict(projection_dim=256)),
    'byol': dict(optim=dict(base_learning_rate=1.0, weight_decay=1e-5)),
    'barlow_twins': dict(optim=dict(base_learning_rate=0.3, weight_decay=1e-4),
                         objective=dict(barlow_twins=dict(lambda_offdiag=5.1e-3))),
    'swav': dict(optim=dict(base_learning_rate=0.6, weight_decay=1e-6)),
}


def paper_config(method: str, dataset: str, arch: str = 'resnet18', *, adc: bool = False,
                 epochs: int = 1000, batch_size: int = 512) -> ml_collections.ConfigDict:
  """A paper experiment: ``method`` (+ADC with ν = υ = 0.1) on ``dataset`` with ``arch``.

  LARS, warm-up 10 epochs + cosine, learning rate scaled by batch / 256 (SPEC §5; ADC paper:
  ResNet-18, batch 512, ν = υ = 0.1, pixel prior by default).
  """
  name = method + ('+adc' if adc else '')
  config = base_config(name, dataset, arch)
  recipe = _METHOD_RECIPES.get(method, {})
  for section, values in recipe.items():
    for key, value in values.items():
      if isinstance(value, dict):
        for sub_key, sub_value in value.items():
          config[section][key][sub_key] = sub_value
      else:
        config[section][key] = value
  config.train.epochs = epochs
  config.train.batch_size = batch_size
  if dataset in ('imagenet100', 'imagenet2012'):
    config.objective[method].update({'temperature': 0.1} if method in ('simclr', 'nscl') else {})
    config.byol.ema_base = 0.996 if method == 'byol' else config.byol.ema_base
    config.eval.crop_fraction = 0.875
  return config


def paper_config_from_arg(method: str, dataset: str, arg: str | None,
                          **kwargs) -> ml_collections.ConfigDict:
  """:func:`paper_config` from a config file's argument: ``adc`` and/or ``resnet50``."""
  words = parse_config_arg(arg)
  arch = 'resnet50' if 'resnet50' in words else 'resnet18'
  return paper_config(method, dataset, arch, adc='adc' in words, **kwargs)


def parse_config_arg(arg: str | None, allowed=('adc', 'resnet18', 'resnet50')) -> set[str]:
  """``configs/x.py:adc,resnet50`` → ``{'adc', 'resnet50'}``; unknown words are refused."""
  words = {w.strip() for w in (arg or '').split(',') if w.strip()}
  unknown = sorted(words - set(allowed))
  if unknown:
    raise ValueError(f'unknown config argument(s) {unknown}; allowed: {list(allowed)} '
                     '(comma-separated, e.g. configs/cifar10_simclr.py:adc)')
  return words
