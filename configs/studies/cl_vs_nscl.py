"""A shared-randomness cohort (arXiv 2510.08852 §5): CL, NSCL, SupCon and CE trained in lockstep.

    python -m glf_jax.main --config configs/studies/cl_vs_nscl.py:mini \
        --workdir runs/cohort_mini
    python -m glf_jax.main --config configs/studies/cl_vs_nscl.py:paper --workdir runs/cohort_c10
    python -m glf_jax.main --config configs/studies/cl_vs_nscl.py:mini \
        --config.cohort.members.nscl.objective.nscl.temperature=0.2 --workdir runs/cohort_t02

``config.mode = 'cohort'`` (``glf_jax.study.cohort``): the four members start from one parameter
copy, see the same batches and the same augmentation keys, and differ only in their objective:
``cl`` (SimCLR, τ = 0.5), ``nscl`` (NSCL, τ = 0.5), ``supcon`` (SupCon, τ = 0.1, its paper's value)
and ``ce`` (cross-entropy on a linear classifier on ``h``). Every ``cohort.track_every`` steps and at
step 0: CKA / RSA on ``h`` and ``z`` and the weight gap (sum and mean over the backbone's kernels)
for every pair, and each member's kNN accuracy, in ``tracks.jsonl`` / ``tracks.png``.

* ``:smoke`` — 2 members (cl, nscl), 4 steps on digits, a tiny network: the tests.
* ``:mini`` (default) — scikit-learn's digits (1,347 / 450 images, 16 px) with the quickstart's
  network and optimiser, 20 epochs (100 steps of 256), tracked every 10 steps on all 450 test
  images, kNN bank the 1,347 training images. Our choice, for a 2-core CPU.
* ``:paper`` — CIFAR-10, ResNet-18, ``configs/simclr.py``'s optimiser (LARS, 0.4 · batch / 256,
  batch 512), τ = 0.5 for CL and NSCL, tracked every 1,000 steps on 10,000 test images (the
  official code's cap), RSA on their first 5,000, weight gap on the backbone's kernels
  (``--config.cohort.weight_gap_layers=backbone_bn`` adds BatchNorm's γ as the official script).
  The epochs are ``configs/simclr.py``'s 1,000; set ``--config.train.epochs`` to the budget.

A study over temperature, batch size or number of classes (``configs/studies/``, ``mode='study'``)
uses :func:`cohort_base` as the base of its ``mode='cohort'`` cells.
"""

from glf_jax.config import base_config, parse_config_arg, tiny
from glf_jax.study.cohort import cohort_config

MEMBERS = (
    ('cl', {'objective.name': 'simclr', 'objective.simclr.temperature': 0.5}),
    ('nscl', {'objective.name': 'nscl', 'objective.nscl.temperature': 0.5}),
    ('supcon', {'objective.name': 'supcon', 'objective.supcon.temperature': 0.1}),
    ('ce', {'objective.name': 'ce'}),
)


def _digits(smoke: bool):
  config = base_config('simclr', 'digits', 'resnet_tiny')
  config.model.width_multiplier = 2             # the quickstart's network
  config.model.projector_hidden_dim = 128
  config.model.projection_dim = 64
  config.optim.name = 'adamw'
  config.optim.base_learning_rate = 2e-3
  config.optim.lr_scaling = 'none'
  config.optim.weight_decay = 1e-4
  config.optim.warmup_epochs = 1.0
  config.train.batch_size = 256
  config.train.epochs = 20
  config.train.log_every = 10
  config.checkpoint.every_steps = 50
  for view in (config.augment.view1, config.augment.view2):
    view.crop_scale = (0.5, 1.0)
    view.flip_prob = 0.0          # flipped digits are other symbols
    view.hue = 0.0
  if smoke:
    tiny(config)
    config.train.batch_size = 32
    config.train.num_steps = 4
    config.train.log_every = 1
    config.checkpoint.every_steps = 2
    config.eval.batch_size = 64
  return config


def _cifar10():
  config = base_config('simclr', 'cifar10', 'resnet18')
  config.train.batch_size = 512
  config.train.epochs = 1000
  config.train.log_every = 50
  config.optim.name = 'lars'
  config.optim.base_learning_rate = 0.4
  config.optim.lr_scaling = 'linear'
  config.optim.weight_decay = 1e-5
  config.optim.momentum = 0.9
  config.optim.lars_eta = 0.02
  config.optim.warmup_epochs = 10.0
  config.model.projector_layers = 2
  config.model.projector_hidden_dim = 2048
  config.model.projection_dim = 256
  config.checkpoint.every_steps = 1000
  return config


def cohort_base(arg=None):
  """The cohort config for ``arg`` (``smoke``, ``mini`` or ``paper``)."""
  a = parse_config_arg(arg, choices=dict(size=('smoke', 'mini', 'paper')),
                       defaults=dict(size='mini'))
  size = a['size']
  if size == 'paper':
    return cohort_config(_cifar10(), MEMBERS, track_every=1000, probe_examples=10_000,
                         knn_examples=10_000, rsa_examples=5000, weight_gap_layers='backbone')
  if size == 'smoke':
    return cohort_config(_digits(True), MEMBERS[:2], track_every=2, probe_examples=48,
                         knn_examples=64, rsa_examples=48)
  return cohort_config(_digits(False), MEMBERS, track_every=10, probe_examples=450,
                       knn_examples=1347, rsa_examples=450)


def get_config(arg=None):
  return cohort_base(arg)
