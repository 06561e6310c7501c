"""CL vs NSCL under shared randomness (arXiv 2510.08852 §5): a study of cohorts.

    python -m glf_jax.main --config configs/studies/cl_vs_nscl.py:mini --workdir runs/cl_nscl_mini
    python -m glf_jax.main --config configs/studies/cl_vs_nscl.py:paper --workdir runs/cl_nscl
    # one cohort alone (mode 'cohort'), any member setting from the command line:
    python -m glf_jax.main --config configs/studies/cl_vs_nscl.py:mini,cohort \
        --config.cohort.members.nscl.objective.nscl.temperature=0.2 --workdir runs/cohort_t02

Every cell is a cohort (``config.mode = 'cohort'``, ``glf_jax.cohort``): its members start
from one parameter copy, see the same batches and the same augmentation keys, and differ only in
their objective: ``cl`` (SimCLR), ``nscl`` (NSCL), and in the ``main`` cell also ``supcon``
(SupCon, τ = 0.1, its paper's value) and ``ce`` (cross-entropy on a linear classifier on ``h``).
Every ``cohort.track_every`` steps and at step 0: CKA / RSA on ``h`` and ``z``, the weight gap
(sum and mean over the backbone's kernels) for every pair, each member's kNN accuracy
(``tracks.jsonl`` / ``tracks.png`` in each cell). The study reports the last tracked values
(mean ± std over seeds) and draws them against the axes and over training.

Axes (the paper's): CL and NSCL temperature τ (the ``main`` cell is τ = 0.5), batch size with
the learning rate scaled by ``optim.lr_scaling`` (``sqrt`` here; the reference batch is 256, so
the ``main`` cell's rate is unchanged) and the number of classes (``data.num_classes_subset``,
classes chosen by ``data.class_subset_seed``).

* ``:smoke`` — 2 cohort cells (``main``, ``t1``: τ 0.5 and 1.0) of cl + nscl, 4 steps on digits, tiny network,
  1 seed: the tests.
* ``:mini`` (default) — scikit-learn's digits (1,347 / 450 images, 16 px) with the quickstart's
  network and optimiser, 100 steps of 256 (20 epochs; the subset cells keep 100 steps), tracked
  every 20 steps on all 450 test images (kNN bank: the training images), 3 seeds. Cells:
  ``main`` (τ 0.5, 4 members), ``t0.1``, ``t1`` (τ 1.0), ``b64`` (batch 64, 20 epochs = 420 steps,
  lr × 0.5), ``c2``, ``c5`` (2- and 5-way class subsets): 6 cohorts × 3 seeds. Our choice, for a
  2-core CPU.
* ``:paper`` — CIFAR-10, ResNet-18, ``configs/simclr.py``'s optimiser (LARS, 0.4 · batch / 256,
  batch 512), tracked every 1,000 steps on 10,000 test images (the official code's cap), RSA on
  their first 5,000, weight gap on the backbone's kernels (``--config.cohort.weight_gap_layers=
  backbone_bn`` adds BatchNorm's γ as the official script); τ ∈ {0.1, 0.2, 0.5, 1.0}, batch ∈
  {128, 256, 512, 1024}, classes ∈ {2, 5, 10} (at a fixed number of epochs: fewer steps with
  fewer classes); 3 seeds. The epochs are ``configs/simclr.py``'s
  1,000; set ``--config.train.epochs`` to the budget.

``:<size>,cohort`` is the ``main`` cell alone as a cohort config (``cohort_base``).
"""

import json

from glf_jax.config import load_config_file, load_config_module, parse_config_arg
from glf_jax.cohort import cohort_config
from glf_jax.study.spec import as_study, cell, comparison, figure, fit

MEMBERS = (
    ('cl', {'objective.name': 'simclr', 'objective.simclr.temperature': 0.5}),
    ('nscl', {'objective.name': 'nscl', 'objective.nscl.temperature': 0.5}),
    ('supcon', {'objective.name': 'supcon', 'objective.supcon.temperature': 0.1}),
    ('ce', {'objective.name': 'ce'}),
)


def _digits(smoke: bool):
  """SimCLR on digits (``configs/studies/digits.py``: the quickstart's network and optimiser,
  20 epochs); the members set their own objectives."""
  config = load_config_file('configs/studies/digits.py:simclr' + (',smoke' if smoke else ''))
  config.train.log_every = 10
  config.checkpoint.every_steps = 50
  if smoke:
    config.train.batch_size = 32
    config.train.num_steps = 4
    config.train.log_every = 1
    config.checkpoint.every_steps = 2
    config.eval.batch_size = 64
  return config


def _cifar10():
  """``configs/simclr.py`` (CIFAR-10, ResNet-18, LARS, batch 512, 1000 epochs); the members set
  their own objectives."""
  config = load_config_file('configs/simclr.py')
  config.train.log_every = 50
  config.checkpoint.every_steps = 1000
  return config


SIZES = ('smoke', 'mini', 'midi', 'paper')
MIDI_SEEDS = (0, 1, 2)
MIDI_PROBE = 2000          # test images for CKA / RSA: CIFAR-10's 2-way subset has 2,000
PAIR = 'pair/cl-nscl'
TEMPERATURE_KEYS = ('cohort.members.cl.objective.simclr.temperature',
                    'cohort.members.nscl.objective.nscl.temperature')


def cohort_base(arg=None):
  """The ``main`` cohort for ``arg`` (``smoke``, ``mini`` or ``paper``): a ``mode='cohort'``
  config."""
  size = parse_config_arg(arg, choices=dict(size=SIZES), defaults=dict(size='mini'))['size']
  if size == 'paper':
    # Each member its own program: ResNet-18's 2-member cohort step then costs 1.01x two
    # separate steps on a 2-core CPU, 1.53x in one program (benchmarks/cohort_step.py).
    return cohort_config(_cifar10(), MEMBERS, track_every=1000, probe_examples=10_000,
                         knn_examples=10_000, rsa_examples=5000, weight_gap_layers='backbone',
                         dispatch='split')
  if size == 'midi':
    # The official protocol: class-stratified batches; every member's temperature 0.5.
    config = load_config_module('configs/studies/cifar10.py').cifar10_run('simclr')
    config.train.sampler = 'stratified'
    config.optim.lr_scaling = 'sqrt'   # x1 at batch 256; the b64 cell's rate follows its batch
    same_tau = [(n, {**k, f'objective.{k["objective.name"]}.temperature': 0.5} if n != 'ce'
                 else k) for n, k in MEMBERS]
    return cohort_config(config, same_tau, track_every=100, probe_examples=MIDI_PROBE,
                         knn_examples=5000, rsa_examples=MIDI_PROBE, dispatch='split')
  # The quickstart's network: one program for all members, 0.89x two separate steps against
  # 0.94x split (benchmarks/cohort_step.py); the same numbers either way.
  if size == 'smoke':
    return cohort_config(_digits(True), MEMBERS[:2], track_every=2, probe_examples=48,
                         knn_examples=64, rsa_examples=48, dispatch='fused')
  config = _digits(False)
  config.optim.lr_scaling = 'sqrt'   # x1 at batch 256; the b64 cell's rate follows its batch
  return cohort_config(config, MEMBERS, track_every=20, probe_examples=450,
                       knn_examples=1347, rsa_examples=450, dispatch='fused')


def _temperature(t):
  return {key: float(t) for key in TEMPERATURE_KEYS}


def _member_overrides(members):
  """``cohort.members.<name>.<key>`` overrides that add ``members`` to a cell's cohort."""
  return {f'cohort.members.{name}.{key}': value for name, keys in members
          for key, value in keys.items()}


def _cells(temperatures, batch_sizes, class_counts, *, main_t, main_extra, subset_steps=None):
  """``main`` (τ = ``main_t``, with the ``main_extra`` members) and one cl + nscl cohort per
  other value of each axis."""
  cells = [cell('main', _member_overrides(main_extra), mode='cohort')]
  cells += [cell(f't{t:g}', _temperature(t), mode='cohort') for t in temperatures if t != main_t]
  cells += [cell(f'b{b}', {'train.batch_size': b}, mode='cohort') for b in batch_sizes]
  steps = {'train.num_steps': subset_steps} if subset_steps else {}
  cells += [cell(f'c{c}', {'data.num_classes_subset': c, **steps}, mode='cohort')
            for c in class_counts]
  return cells


def _figures(temperature_cells, batch_cells, class_cells):
  figures = []
  for metric, name in ((f'{PAIR}/cka_h', 'cka_h'), (f'{PAIR}/rsa_h_pearson', 'rsa_h'),
                       (f'{PAIR}/weight_gap_sum', 'weight_gap')):
    figures.append(figure('line', metric, x=TEMPERATURE_KEYS[0], cells=temperature_cells,
                          log_x=True, file=f'temperature_{name}.png'))
    figures.append(figure('line', metric, x='train.batch_size', cells=batch_cells, log_x=True,
                          file=f'batch_{name}.png'))
    figures.append(figure('line', metric, x='data.num_classes_subset', cells=class_cells,
                          file=f'classes_{name}.png'))
  for metric, name in ((f'{PAIR}/cka_h', 'cka_h'), (f'{PAIR}/weight_gap_sum', 'weight_gap')):
    # Against the step: the cells of one schedule (the batch cells train other step counts).
    same_steps = list(dict.fromkeys(temperature_cells + class_cells))
    figures.append(figure('track', metric, cells=same_steps, file=f'over_training_{name}.png'))
  # NSCL vs SupCon and CE as CL's neighbours, in the main cell.
  figures.append(figure('track', f'{PAIR}/cka_h', cells=['main'], file='main_cka_h.png',
                        title="CKA (h) of CL with NSCL, SupCon and CE (main cell)",
                        metrics=[f'{PAIR}/cka_h', 'pair/cl-supcon/cka_h', 'pair/ce-cl/cka_h']))
  return figures


def _midi_cells(extra, main_steps):
  """``:midi``: the main cohort (CL, NSCL, SupCon, CE at one temperature), SupCon at its own
  0.1, the temperature, class-count (equal steps, equal probe) and batch (equal epochs) axes,
  and a long cohort at a constant learning rate for the weight gap's growth."""
  cells = _cells((0.1, 1.0), (64,), (2, 5), main_t=0.5, main_extra=extra,
                 subset_steps=main_steps)
  cells.append(cell('supcon_t0.1', _member_overrides(
      [('supcon', {'objective.name': 'supcon', 'objective.supcon.temperature': 0.1})]),
      mode='cohort'))
  cells.append(cell('const_lr', {'optim.warmup_epochs': 0.0, 'optim.final_lr_fraction': 1.0,
                                 'train.num_steps': 2 * main_steps, 'cohort.track_every': 50},
                    mode='cohort'))
  return cells


def _comparisons(names):
  """The paper's claims on the cells of ``names`` (a claim whose cells a size lacks is left
  out)."""
  cka = f'{PAIR}/cka_h'
  claims = [
      comparison('t1', 'main', metric=cka, expect='+', family='temperature',
                 claim='CL-NSCL alignment rises with the temperature'),
      comparison('main', 't0.1', metric=cka, expect='+', family='temperature',
                 claim='CL-NSCL alignment rises with the temperature'),
      comparison('c5', 'c2', metric=cka, expect='+', family='classes',
                 claim='CL-NSCL alignment rises with the number of classes'),
      comparison('main', 'c5', metric=cka, expect='+', family='classes',
                 claim='CL-NSCL alignment rises with the number of classes'),
      comparison('main', 'main', metric=cka, reference_metric='pair/cl-supcon/cka_h', expect='+',
                 family='NSCL closest', name='NSCL - SupCon (CKA with CL)',
                 claim='NSCL tracks CL more closely than SupCon'),
      comparison('main', 'main', metric=cka, reference_metric='pair/ce-cl/cka_h', expect='+',
                 family='NSCL closest', name='NSCL - CE (CKA with CL)',
                 claim='NSCL tracks CL more closely than CE'),
      comparison('b64', 'main', metric=cka, claim='batch size (the paper: a dependence)'),
  ]
  return [c for c in claims if {json.loads(c)['cell'], json.loads(c)['reference']} <= set(names)]


def get_config(arg=None):
  a = parse_config_arg(arg, choices=dict(size=SIZES, flags=('cohort',)),
                       defaults=dict(size='mini'))
  size = a['size']
  config = cohort_base(size)
  if a['cohort']:
    return config
  # The study's base cohort is CL + NSCL; the main cell adds SupCon and CE (the axis cells
  # compare CL with NSCL only, at a third of the cost).
  extra = [(name, keys) for name, keys in MEMBERS if name not in ('cl', 'nscl')]
  if size == 'midi':  # every member at one temperature, as the official cohort
    extra = [(n, {**k, 'objective.supcon.temperature': 0.5} if n == 'supcon' else k)
             for n, k in extra]
  with config.unlocked():
    for name, _ in extra:
      if name in config.cohort.members:
        del config.cohort.members[name]
    # All of digits' / CIFAR-10's 10 classes (the same examples in the same order): the main
    # cell's point on the class axis.
    config.data.num_classes_subset = 10
  comparisons, fits = (), ()
  if size == 'midi':
    seeds = MIDI_SEEDS
    main_steps = int(config.train.epochs * (50_000 // config.train.batch_size))
    cells = _midi_cells(extra, main_steps)
    fits = (fit('const_lr', f'{PAIR}/weight_gap_sum', after_step=0),)
  elif size == 'paper':
    seeds = (0, 1, 2)
    cells = _cells((0.1, 0.2, 0.5, 1.0), (128, 256, 1024), (2, 5), main_t=0.5, main_extra=extra)
  elif size == 'smoke':
    seeds = (0,)
    cells = _cells((1.0,), (), (), main_t=0.5, main_extra=())
  else:
    seeds = (0, 1, 2)
    cells = _cells((0.1, 1.0), (64,), (2, 5), main_t=0.5, main_extra=extra, subset_steps=100)
    # The gap over a cosine schedule: exponential or not, the fit says.
    fits = (fit('main', f'{PAIR}/weight_gap_sum', after_step=0),)
  names = [json.loads(c)['name'] for c in cells]
  comparisons = _comparisons(names)
  axis = lambda prefix: ['main'] + [n for n in names if n[0] == prefix and n[1].isdigit()]
  metrics = ([f'{PAIR}/{m}' for m in ('cka_h', 'cka_z', 'rsa_h_pearson', 'rsa_h_spearman',
                                        'weight_gap_sum', 'weight_gap_mean')]
             + ['pair/cl-supcon/cka_h', 'pair/ce-cl/cka_h', 'pair/nscl-supcon/cka_h',
                'pair/ce-nscl/cka_h', 'member/cl/knn_top1', 'member/nscl/knn_top1'])
  name = 'cl_vs_nscl' + ('' if size == 'paper' else f'_{size}')
  figures = _figures(axis('t'), axis('b'), axis('c'))
  if size == 'midi':
    figures.append(figure('track', f'{PAIR}/weight_gap_sum', cells=['const_lr'],
                          file='const_lr_weight_gap.png'))
  return as_study(config, name, cells=cells, seeds=seeds, metrics=metrics, figures=figures,
                  compare_to='main', comparisons=comparisons, fits=fits)
