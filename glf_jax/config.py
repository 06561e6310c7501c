"""The config of a run: every sub-tree with its defaults, built from a method and a dataset.

``base_config(method, dataset, arch)`` gives a complete run: the dataset table's sizes and
statistics (``glf_jax.data.datasets``), the method's heads, view recipe and settings
(``glf_jax.methods``), and the defaults every other part exposes. The config files in
``configs/`` start from it and state every number of their experiment: a method's file through
:func:`method_config` (the words of its argument: dataset, ``resnet50``, ``adc`` — ADC's paper
setting, :func:`adc_paper_setting` — and ``tiny``, the small-run switch, :func:`small_run`).
Sub-trees (each module reads only its own)::

    data        the training data (glf_jax.data.sources)
    augment     the two views' recipes (glf_jax.data.recipes)
    model       the encoder (glf_jax.models.encoder)
    objective   name '<method>[+<constraint>...]' and each term's hyperparameters
    method      the method's own settings (e.g. ema_base), absent keys for methods without any
    optim       optimiser and learning-rate schedule (glf_jax.train.optim)
    prior       ADC's prior encoder (glf_jax.prior)
    train       batch size, length, logging, the online probe, the NaN guard, data workers
    checkpoint  orbax checkpoints
    eval        evaluators and their settings, the evaluation data and transform
    distributed multi-process settings
    compile     the compile mode's target chips (glf_jax.modes.compile)

plus ``mode``, ``seed``, ``allow_config_change``, ``xla_cpu_flags`` and
``compilation_cache_dir``. A value that may be "not set" is ``None`` (a typed placeholder that the
command line can set), never ``''``, ``0`` or ``-1``. :func:`validate` checks a run's config once,
when a run starts.

This module assembles defaults the layers below expose; none of them imports it back. Imports:
methods, data, models, train (optimiser defaults), prior, evaluate, run (the saved config).
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections
from ml_collections import config_dict

from glf_jax import evaluate
from glf_jax import methods
from glf_jax.data import datasets, recipes, sources
from glf_jax.data.pipeline import SAMPLERS
from glf_jax.losses import checks
from glf_jax.models import default_model_config
from glf_jax.prior import default_prior_config
from glf_jax.runtime import compile_cache
# Re-exported: what a saved config is compared with (glf_jax.run.saved_config).
from glf_jax.runtime import targets
from glf_jax.run.saved_config import IGNORED_ON_RESUME, config_differences, flatten, to_json  # noqa: F401
from glf_jax.train.optim import default_optim_config

# 'show_config' prints the resolved config and exits (glf_jax.main); 'plot' redraws a run's plots.
MODES = ('pretrain', 'eval', 'linear_probe', 'knn', 'finetune', 'export', 'plot', 'show_config',
         'study', 'cohort', 'compile')
# The modes that evaluate an encoder (pretrain too, with train.eval_after).
EVAL_MODES = ('eval', 'linear_probe', 'knn', 'finetune')


def base_config(method: str = 'simclr+adc', dataset: str = 'cifar10',
                arch: str = 'resnet18') -> ml_collections.ConfigDict:
  """A complete run config for ``method`` (an objective name) on ``dataset`` with ``arch``."""
  record = methods.get(method)
  info = datasets.dataset_info(dataset)
  c = ml_collections.ConfigDict()
  c.mode = 'pretrain'
  c.seed = 0
  c.allow_config_change = False
  # XLA CPU flag preset (glf_jax.xla_cpu): 'fast' halves a ResNet step on CPU; 'none' for XLA's
  # defaults. Ignored on GPU/TPU.
  c.xla_cpu_flags = 'fast'
  # JAX's persistent compilation cache (glf_jax.runtime.compile_cache): a restarted run loads its
  # compiled programs. A directory or gs:// path; 'none' (or None, '') turns it off.
  c.compilation_cache_dir = compile_cache.default_dir()

  c.data = sources.default_data_config(dataset)
  c.augment = recipes.RECIPES[record.augment].views(info.image_size, mean=info.mean,
                                                    std=info.std, family=info.family)
  c.model = default_model_config(arch, stem='cifar' if info.family == 'cifar' else 'imagenet',
                                 **record.heads)
  if record.classifier:
    # Image folders know their classes only when read: such runs set model.num_classes.
    c.model.num_classes = info.num_classes or 0
  c.objective = methods.objective_config(method)
  c.method = ml_collections.ConfigDict(dict(record.settings))
  c.optim = default_optim_config('lars')
  c.prior = default_prior_config()

  c.train = ml_collections.ConfigDict(dict(
      batch_size=512,             # global: per process x processes
      epochs=1000,
      num_steps=config_dict.placeholder(int),  # set: overrides epochs
      log_every=50,               # metrics.jsonl; at most total steps / 20 (run.session)
      online_probe_lr=1e-3,
      max_nonfinite_in_a_row=5,   # stop after this many skipped (non-finite) steps in a row
      worker_count=0,             # grain worker processes (0: threads)
      # Steps one jitted call runs (lax.scan over that many batches; None: 1): the host's
      # dispatch is paid once for them, for a pod's short steps. Equal to one step per call up to
      # float rounding, not bit for bit (XLA compiles the loop's body on its own).
      steps_per_call=config_dict.placeholder(int),
      # The order of the training examples: None = a uniform permutation each epoch;
      # 'stratified' = every class in every batch (the official CL-vs-NSCL sampler).
      sampler=config_dict.placeholder(str),
      num_devices=config_dict.placeholder(int),  # None: every device
      eval_after=True,            # evaluate the encoder when pretraining ends
  ))
  c.checkpoint = ml_collections.ConfigDict(dict(every_steps=1000, keep=3, async_save=True))
  c.eval = evaluate.default_eval_config(info)
  _link_image_sizes(c, info.image_size)
  # num_processes: None = one process; N = explicit (with coordinator_address and process_id);
  # auto_detect = jax.distributed.initialize() finds the cluster (SLURM, TPU pod, Open MPI).
  c.distributed = ml_collections.ConfigDict(dict(
      coordinator_address=config_dict.placeholder(str),
      num_processes=config_dict.placeholder(int),
      process_id=config_dict.placeholder(int),
      auto_detect=False))
  # The compile mode (glf_jax.modes.compile): target 'tpu:<chip>:<topology>' or
  # 'gpu:<chip>x<count>' (glf_jax.runtime.targets); num_examples: images per epoch for its
  # estimate (None: the dataset table's training split).
  c.compile = ml_collections.ConfigDict(dict(
      target=config_dict.placeholder(str),
      num_examples=config_dict.placeholder(int)))
  return c


def _link_image_sizes(c: ml_collections.ConfigDict, table_size: int) -> None:
  """One image size per run, stated once: ``data.image_size``, the size the images are decoded
  at (a dataset stored at one size, e.g. CIFAR's 32, states it: the table's ``table_size``). The
  views' ``augment.view*.image_size`` follow it, and ``eval.transform.image_size`` (and with the
  views the pixel prior) follows ``augment.view1.image_size`` — the size the network sees —
  unless a config or the command line sets them on purpose: they are ml_collections references,
  and setting a following key sets only that key (:func:`validate` refuses sizes that then
  disagree)."""
  if c.data.image_size is None:
    c.data.image_size = table_size
  c.augment.view1.image_size = c.data.get_ref('image_size').identity()
  c.augment.view2.image_size = c.data.get_ref('image_size').identity()
  c.eval.transform.image_size = c.augment.view1.get_ref('image_size').identity()


def tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to a tiny model (tests, smoke runs); returns it."""
  config.model.arch = 'resnet_tiny'
  config.model.width_multiplier = 1
  config.model.projector_hidden_dim = 32
  config.model.projection_dim = 16
  config.model.predictor_hidden_dim = 32
  if config.model.num_prototypes:
    config.model.num_prototypes = 10
  for term in config.objective.values():
    if isinstance(term, ml_collections.ConfigDict) and 'w_size' in term:
      term.w_size = min(term.w_size, 8)  # whitening sub-batches that tiny batches can hold
  return config


def describe(config: ml_collections.ConfigDict) -> str:
  """Every key of ``config`` with its value, sorted, one ``key: value`` a line (values as the
  command line takes them: ``--config.<key>=<value>``)."""
  def items(tree, prefix):
    for key in sorted(tree):
      value = tree[key]
      if isinstance(value, dict) and value:
        yield from items(value, f'{prefix}{key}.')
      else:
        yield f'{prefix}{key}', value
  return '\n'.join(f'{key}: {value!r}' for key, value in items(config.to_dict(), ''))


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks a run's config once, when the run starts (each sub-tree's builder checks the rest).

  Here: the run-level fields, the method's settings and the view recipes; the objective, model,
  optimiser, prior and data are checked by what builds them (objective, encoder, optimiser,
  prior, source), each once.
  """
  if config.mode not in MODES:
    raise ValueError(f'config.mode must be one of {list(MODES)}, got {config.mode!r}')
  if not isinstance(config.seed, int) or config.seed < 0:
    raise ValueError(f'seed must be an int >= 0, got {config.seed!r}')
  t = config.train
  checks.check_positive_int('train.batch_size', t.batch_size)
  checks.check_positive_int('train.num_steps', t.num_steps, optional=True)
  checks.check_positive_int('train.num_devices', t.num_devices, optional=True)
  checks.check_positive_int('train.max_nonfinite_in_a_row', t.max_nonfinite_in_a_row)
  checks.check_positive_int('train.log_every', t.log_every)
  checks.check_positive_int('train.steps_per_call', t.get('steps_per_call'), optional=True)
  if t.get('sampler') not in (None, *SAMPLERS):
    raise ValueError(f'train.sampler must be None (shuffle) or one of {list(SAMPLERS)}, got '
                     f'{t.sampler!r}')
  if t.num_steps is None and not t.epochs > 0:
    raise ValueError(f'train.epochs must be > 0 (or set train.num_steps), got {t.epochs!r}')
  if not t.online_probe_lr > 0:
    raise ValueError(f'train.online_probe_lr must be > 0, got {t.online_probe_lr!r}')
  checks.check_positive_int('checkpoint.every_steps', config.checkpoint.every_steps)
  checks.check_positive_int('checkpoint.keep', config.checkpoint.keep)
  record = methods.get(config.objective.name)
  _check_method_fits(config, record)
  record.check_settings(config.method.to_dict())
  if record.classifier:
    checks.check_positive_int('model.num_classes (the classifier of the method)', config.model.num_classes)
  for name in ('view1', 'view2'):
    recipes.validate_view_config(config.augment[name])
  evaluate.validate_eval_config(config.eval)
  if config.mode == 'compile':
    _check_compile(config)
  _check_data_roots(config)
  _check_eval_splits(config)
  _check_image_sizes(config)


def _check_image_sizes(config: ml_collections.ConfigDict) -> None:
  """Refuses sizes that disagree (one image size per run: see :func:`_link_image_sizes`)."""
  view1, view2 = config.augment.view1.image_size, config.augment.view2.image_size
  if view1 != view2:
    raise ValueError(f'augment.view1.image_size ({view1}) and augment.view2.image_size ({view2}) '
                     'differ: both views go through the network in one batch; set them equal')
  decoded = config.data.get('image_size')
  if decoded is not None and view1 > decoded:
    raise ValueError(f'augment.view*.image_size ({view1}) is larger than data.image_size '
                     f'({decoded}): the views would be upsampled decoded images; leave the view '
                     'sizes unset (they follow data.image_size) or set them <= data.image_size')
  if config.eval.transform.image_size != view1:
    raise ValueError(f'eval.transform.image_size ({config.eval.transform.image_size}) differs '
                     f'from augment.view*.image_size ({view1}): the encoder would be evaluated '
                     'at another size than it was trained; leave eval.transform.image_size unset '
                     '(it follows the views)')


def _check_method_fits(config: ml_collections.ConfigDict, record: methods.Method) -> None:
  """Refuses an objective whose method needs settings or heads the config lacks (its
  objective.name was switched on the command line), saying which config to start from."""
  name = config.objective.name
  method, constraints = methods.parse_name(name)
  start = f'configs/{method}.py' + (f':{",".join(constraints)}' if constraints else '')
  given, wanted = set(config.method), set(record.settings)
  heads, flags = [], []
  if record.heads.get('predictor_layers') and not config.model.predictor_layers:
    heads.append('a predictor head')
    flags += [f'--config.model.predictor_layers={record.heads["predictor_layers"]}',
              f'--config.model.predictor_hidden_dim={record.heads["predictor_hidden_dim"]}']
  if record.heads.get('num_prototypes') and not config.model.num_prototypes:
    heads.append('prototypes')
    flags.append(f'--config.model.num_prototypes={record.heads["num_prototypes"]}')
  if given != wanted:
    # config.method is locked: keys cannot be added or removed on the command line.
    if not wanted:
      raise ValueError(f'config.method holds the settings {sorted(given)} of another method and '
                       f'objective {name!r} has none; start from {start}')
    needs = [f'its settings (config.method: {sorted(wanted)})'] + heads
    raise ValueError(f'objective {name!r} needs {" and ".join(needs)}, which this config '
                     f'(config.method: {sorted(given)}) lacks; start from {start}')
  if heads:
    raise ValueError(f'objective {name!r} needs {" and ".join(heads)}, which this config lacks; '
                     f'start from {start} (or set {" ".join(flags)})')


def _check_compile(config: ml_collections.ConfigDict) -> None:
  """The compile mode's target and epoch size."""
  if config.compile.target is None:
    raise ValueError('the compile mode needs --config.compile.target, e.g. '
                     f'{targets.EXAMPLES}')
  targets.parse_target(config.compile.target)
  checks.check_positive_int('compile.num_examples', config.compile.num_examples, optional=True)


def _check_data_roots(config: ml_collections.ConfigDict) -> None:
  """Refuses ``root`` set for data that is not an image folder: it would be ignored."""
  for where, data, inherits in (('data', config.data, False),
                                ('eval.data', config.eval.data, True)):
    name = data.get('name')
    if data.get('root') is None or name == 'image_folder':
      continue
    read = (f'{where}.name is unset, so the evaluation reads the pretraining data' if inherits
            and name is None else f'{where}.name is {name!r}')
    raise ValueError(f'{where}.root is set but {read}, which ignores it; for an image folder add '
                     f'--config.{where}.name=image_folder')


def _check_eval_splits(config: ml_collections.ConfigDict) -> None:
  """Checks, before training, that an image folder has the splits its evaluation will read, and
  no class in the test split that the train split lacks."""
  if not ((config.mode == 'pretrain' and config.train.eval_after) or
          (config.mode in EVAL_MODES and config.eval.data.name is not None)):
    return  # the eval modes otherwise read the evaluated run's data: checked when it is read
  data = config.eval.data if config.eval.data.name is not None else config.data
  if data.get('name') != 'image_folder' or not data.get('root'):
    return
  for key in ('train_split', 'test_split'):
    sources.check_image_folder_split(data.root, config.eval[key], f'eval.{key}')
  sources.check_image_folder_classes(data.root, config.eval.train_split, config.eval.test_split)


def parse_config_arg(arg: str | None, *, choices: dict[str, tuple[str, ...]],
                     defaults: dict[str, str]) -> dict[str, str | bool]:
  """A config file's argument: ``configs/byol.py:cifar100,adc,resnet50``.

  ``choices`` maps a group name to its words (e.g. ``{'dataset': ('cifar10', 'cifar100',
  'imagenet100'), 'arch': ('resnet18', 'resnet50')}``), one word per group at most, the default
  from ``defaults``; any other word must be a flag listed under ``choices['flags']`` and comes
  back as True (absent flags as False). Unknown or repeated words are refused.
  """
  words = [w.strip() for w in (arg or '').split(',') if w.strip()]
  flags = choices.get('flags', ())
  result = {group: defaults[group] for group in choices if group != 'flags'}
  result.update({flag: False for flag in flags})
  seen = set()
  for word in words:
    group = next((g for g, ws in choices.items() if g != 'flags' and word in ws), None)
    if group is None and word not in flags:
      allowed = [w for ws in choices.values() for w in ws]
      raise ValueError(f'unknown config argument {word!r}; allowed: {allowed} (comma-separated, '
                       'e.g. configs/simclr.py:cifar100,adc)')
    key = group or word
    if key in seen:
      raise ValueError(f'config argument {arg!r} gives {key} twice')
    seen.add(key)
    result[key] = word if group else True
  return result


# ----------------------------------------------------------------------------------------------
# A method's config file (configs/<method>.py): its argument words and the shared settings.

# The words of a method config's argument (``configs/byol.py:cifar100,adc``).
METHOD_WORDS = dict(dataset=('cifar10', 'cifar100', 'imagenet100', 'digits'),
                    arch=('resnet18', 'resnet50'), flags=('adc', 'tiny'))


def method_config(method: str, arg: str | None) -> tuple[ml_collections.ConfigDict, dict]:
  """The start of ``configs/<method>.py``'s ``get_config(arg)``: ``(config, words)``.

  ``arg``: comma-separated, in any order, at most one dataset (``cifar10``, the default,
  ``cifar100``, ``imagenet100`` or ``digits``; ``digits`` is the default with ``tiny``), ``resnet50``
  (default ResNet-18), ``adc`` (adds ADC with the paper's setting, :func:`adc_paper_setting`) and
  ``tiny`` (the small-run switch, applied by :func:`finish_method_config` after the file's
  numbers). ``words`` has ``dataset``, ``arch``, ``adc``, ``tiny`` and ``imagenet``.

  On a pod: ``train.batch_size`` is the global batch; keep at least 64 images per chip (a warning
  says so at start; ``--config.mode=compile`` estimates the step for a slice you name), raising
  the batch with the chips, and the learning rate follows it through ``optim.lr_scaling``
  (``linear``, these configs' rule: ``base_learning_rate · batch / 256``, SimCLR appendix B.1;
  ``sqrt`` and ``fourth_root`` grow slower), so only ``--config.train.batch_size`` changes.
  When a step is short (CIFAR on many chips: well under 10 ms), ``--config.train.steps_per_call=8``
  runs 8 steps a jitted call, so the host's dispatch (about 0.2 ms a call for ResNet-18's state)
  is paid once for them (results equal up to float rounding; keep ``checkpoint.every_steps`` a
  multiple of it).
  """
  words = parse_config_arg(arg, choices=METHOD_WORDS,
                           defaults=dict(dataset='cifar10', arch='resnet18'))
  if words['tiny'] and not any(w.strip() in METHOD_WORDS['dataset']
                               for w in (arg or '').split(',')):
    words['dataset'] = 'digits'  # a tiny run needs no download
  words['imagenet'] = words['dataset'] == 'imagenet100'
  config = base_config(method + ('+adc' if words['adc'] else ''), words['dataset'], words['arch'])
  if words['adc']:
    adc_paper_setting(config)
  return config, words


def finish_method_config(config: ml_collections.ConfigDict, words: dict
                         ) -> ml_collections.ConfigDict:
  """The end of a method config file: with ``tiny``, :func:`small_run`; returns ``config``."""
  return small_run(config) if words['tiny'] else config


def adc_paper_setting(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """ADC as the paper runs it (arXiv 2508.13596): ν = υ = 0.1, σ² = 0.5, ρ = 5, the identity
  (pixel) prior. ``config.objective`` must hold ``adc``; returns ``config``."""
  config.objective.adc.nu = 0.1             # DCM weight
  config.objective.adc.upsilon = 0.1        # LPM weight
  config.objective.adc.sigma2 = 0.5
  config.objective.adc.rho = 5.0
  config.prior.kind = 'pixels'              # the paper's identity prior
  return config


def smoke_run(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The studies' test switch (``smoke``): :func:`tiny`'s network, 3 steps of 64 on one device
  (the smallest program to compile), a 2-epoch probe on 128 / 64 images; returns ``config``."""
  tiny(config)
  config.train.num_steps = 3
  config.train.batch_size = 64
  config.train.log_every = 1
  config.train.num_devices = 1
  config.optim.warmup_epochs = 0.0
  config.eval.linear.epochs = 2
  config.eval.max_train_examples = 128
  config.eval.max_test_examples = 64
  return config


def small_run(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The small-run switch (``:tiny``): :func:`tiny`'s network, 30 steps of 64 images on one
  device without warm-up, a short evaluation (linear probe and kNN on at most 512 / 256 images,
  beside the random initialisation), no t-SNE map. A minute or two on a laptop CPU; returns
  ``config``."""
  tiny(config)
  config.train.batch_size = 64
  config.train.num_steps = 30
  config.train.log_every = 10
  config.train.num_devices = 1
  config.optim.warmup_epochs = 0.0
  config.checkpoint.every_steps = 1000
  config.eval.evaluators = ('linear', 'knn')
  config.eval.linear.epochs = 20
  config.eval.max_train_examples = 512
  config.eval.max_test_examples = 256
  config.eval.compare_random_init = True
  config.eval.embedding_examples = 0
  return config


_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config_module(path: str):
  """The config file ``path`` as a module (its helpers, e.g. ``configs/quickstart.py``'s
  ``digits_run``); a relative path is tried from the working directory, then from the
  repository root."""
  if not os.path.isabs(path) and not os.path.exists(path):
    path = os.path.join(_REPO_ROOT, path)
  if not os.path.isfile(path):
    raise ValueError(f'no config file {path}')
  module_spec = importlib.util.spec_from_file_location(
      f'_glf_config_{abs(hash(path))}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of ``path[:arg]`` (path as :func:`load_config_module`)."""
  path, _, arg = spec.partition(':')
  try:
    module = load_config_module(path)
  except ValueError as e:
    raise ValueError(f'config {spec!r}: {e}') from None
  return module.get_config(arg) if arg else module.get_config()
