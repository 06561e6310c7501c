"""ADC ablation (arXiv 2508.13596): baseline / +DCM / +LPM / +ADC over seeds; ν, υ, ρ, σ² sweeps.

    python -m glf_jax.main --config configs/studies/adc_ablation.py:mini --workdir runs/adc_mini
    python -m glf_jax.main --config configs/studies/adc_ablation.py:paper --workdir runs/adc_paper
    # one shard of n (each every n-th run), then the tables from whatever cells exist:
    python -m glf_jax.main --config configs/studies/adc_ablation.py:paper --workdir runs/adc_paper \
        --config.study.shard=0/8
    python -m glf_jax.main --config configs/studies/adc_ablation.py:paper --workdir runs/adc_paper \
        --config.study.aggregate_only=True

Cells: ``baseline`` (the method alone), ``dcm`` (ADC with υ = 0: DCM only, unit weights),
``lpm`` (ν = 0: LPM only), ``adc`` (ν = υ = 0.1, pixel prior), sweeps ``nu_<v>`` / ``upsilon_<v>``
(the other weight at 0.1), ``rho_<v>``, ``sigma2_<v>`` (ADC's Student-t degrees of freedom and
bandwidth; both kernels' σ² move together) and ``prior_random`` (LPM with a random-init prior).

* ``:smoke`` — 2 cells (baseline, adc), 1 seed, 3 steps on digits, tiny evaluation: the tests.
* ``:mini`` (default) — SimCLR on scikit-learn's digits (1,347 train / 450 test images, 16 px)
  with the quickstart's small ResNet and optimiser, 20 epochs (100 steps of 256), 3 seeds; a
  coarser grid: one method, ν, υ ∈ {0.1, 1, 10} (the range of the paper's stability claim; 0.1
  is the ``adc`` cell), no ρ/σ²/prior sweeps: 8 cells, 24 runs. Measured: one 30-epoch cell took
  96 CPU-seconds (3.3 min wall with the machine's 2 cores shared four ways), so 24 20-epoch runs
  should take about 15-20 minutes on the 2 cores alone. Digits because a few minutes on CIFAR
  JPEGs does not separate the methods (issue 11's calibration: 40.2 ± 0.4 vs 40.2 ± 0.6). Digits
  saturates too (97.8 % linear top-1 after 30 epochs), so expect differences within the seeds'
  spread.
* ``:midi`` — CIFAR-10 at 16 px (``configs/studies/cifar10.py``: the calibrated tier), SimCLR
  with ADC's paper setting and the pixel prior; cells ``baseline``, ``adc``, ``dcm``, ``lpm``,
  ``adc_simclr_prior`` (LPM's prior the ``baseline`` run of the same seed: run seed by seed, on
  one machine), ``nu_1``, ``upsilon_1``; the seeds of ``MIDI_SEEDS`` (from a target power); each claim
  a comparison with its verdict (``results.md``, Comparisons). Needs CIFAR-10: TFDS's, or the JPEG
  folder with ``--config.data.name=image_folder --config.data.root=ROOT``; records with
  ``--config.study.cells_dir=studies/results/adc_ablation_midi/cells``.
* ``:paper`` — CIFAR-10, ResNet-18, each method's config file (``configs/<method>.py:adc``: its
  paper numbers, 1000 epochs) for SimCLR, BYOL, Barlow Twins, MoCo v3, SimSiam, SwAV; sweeps on
  SimCLR; 3 seeds. Paper values (CIFAR-10 linear top-1, docs/maths.md §5): SimCLR 91.80 → +ADC 93.46,
  BYOL 91.73 → +ADC 93.70. The ρ and σ² grids are this file's choice (the paper does not give
  them).
"""

from glf_jax.config import adc_paper_setting, load_config_file, load_config_module
from glf_jax.config import parse_config_arg
from glf_jax.study.spec import as_study, cell, comparison, figure
from glf_jax.study.stats import seeds_for_power

# :midi's seeds from a target power (glf_jax.study.stats.seeds_for_power, 80 % at p < 0.05): the
# pilot is the spread of the per-seed ADC - baseline linear top-1 differences over :midi's first 3
# seeds (studies/results/adc_ablation_midi; tests/test_study_stats.py recomputes it from those
# cells), the target the smallest gain worth detecting at :midi: 0.0075, 75 of the 10,000 test
# images, under half the paper's +0.0166. At least 3 seeds whatever the pilot says.
MIDI_PILOT_SD = 0.0017
MIDI_TARGET = 0.0075
MIDI_SEEDS = tuple(range(seeds_for_power(MIDI_PILOT_SD, MIDI_TARGET, minimum=3)))  # (0, 1, 2)

WEIGHTS = (0.01, 0.1, 1.0, 10.0)       # the ν and υ grid of the paper's ablation
MINI_WEIGHTS = (0.1, 1.0, 10.0)        # :mini: the range of the paper's stability claim
RHOS = (3.0, 5.0, 10.0, 50.0)          # Student-t degrees of freedom (> 2)
SIGMA2S = (0.1, 0.25, 0.5, 1.0)
PAPER_LINEAR_TOP1 = {                  # CIFAR-10, ResNet-18 (docs/maths.md §5)
    ('simclr', 'baseline'): 0.9180, ('simclr', 'adc'): 0.9346,
    ('byol', 'baseline'): 0.9173, ('byol', 'adc'): 0.9370,
}


def _digits_base(smoke=False):
  """SimCLR + ADC on digits (``configs/studies/digits.py``) with ADC's settings here."""
  config = load_config_file('configs/studies/digits.py:simclr+adc' + (',smoke' if smoke else ''))
  config.objective.adc.nu = 0.1
  config.objective.adc.upsilon = 0.1
  config.objective.adc.sigma2 = 0.5
  config.objective.adc.sigma2_prior = 0.5
  config.objective.adc.rho = 5.0
  config.prior.kind = 'pixels'
  return config


def _ablation_cells(method, *, base=None, paper=False):
  """baseline / dcm / lpm / adc for ``method`` (a ``configs/<method>.py:adc`` base if given)."""
  def paper_values(kind):
    value = PAPER_LINEAR_TOP1.get((method, kind)) if paper else None
    return {'linear/top1': value} if value is not None else None
  prefix = '' if base is None else f'{method}_'
  return [
      cell(prefix + 'baseline', {'objective.name': method}, base=base,
           paper=paper_values('baseline')),
      cell(prefix + 'dcm', {'objective.adc.upsilon': 0.0}, base=base),
      cell(prefix + 'lpm', {'objective.adc.nu': 0.0}, base=base),
      cell(prefix + 'adc', {}, base=base, paper=paper_values('adc')),
  ]


def _sweeps(weights, rhos=(), sigma2s=(), prior_kinds=()):
  cells = []
  for value in weights:
    if value != 0.1:               # 0.1 is the adc cell
      cells.append(cell(f'nu_{value:g}', {'objective.adc.nu': value}))
      cells.append(cell(f'upsilon_{value:g}', {'objective.adc.upsilon': value}))
  cells += [cell(f'rho_{v:g}', {'objective.adc.rho': v}) for v in rhos if v != 5.0]
  cells += [cell(f'sigma2_{v:g}', {'objective.adc.sigma2': v, 'objective.adc.sigma2_prior': v})
            for v in sigma2s if v != 0.5]
  cells += [cell(f'prior_{kind}', {'prior.kind': kind}) for kind in prior_kinds]
  return cells


def _sweep_names(prefix, values, adc_value):
  """The cells of one sweep, in order; the ``adc`` cell stands for the default value."""
  return ['adc' if v == adc_value else f'{prefix}_{v:g}' for v in values]


def _sweep_figures(weights, rhos=(), sigma2s=()):
  figures = [
      figure('bar', 'linear/top1', file='ablation_linear_top1.png'),
      figure('line', 'linear/top1', x='objective.adc.nu', log_x=True, file='sweep_nu.png',
             cells=_sweep_names('nu', weights, 0.1)),
      figure('line', 'linear/top1', x='objective.adc.upsilon', log_x=True,
             file='sweep_upsilon.png', cells=_sweep_names('upsilon', weights, 0.1)),
  ]
  if rhos:
    figures.append(figure('line', 'linear/top1', x='objective.adc.rho', log_x=True,
                          file='sweep_rho.png', cells=_sweep_names('rho', rhos, 5.0)))
  if sigma2s:
    figures.append(figure('line', 'linear/top1', x='objective.adc.sigma2',
                          log_x=True, file='sweep_sigma2.png',
                          cells=_sweep_names('sigma2', sigma2s, 0.5)))
  return figures


def _comparisons(stability_cells):
  """The claims every size tests: ADC and its parts against the baseline, and ADC's stability
  over ``stability_cells`` (``nu_<v>`` / ``upsilon_<v>`` against the ``adc`` cell's 0.1)."""
  paper = 'SimCLR 91.80 -> 93.46 (CIFAR-10, ResNet-18, 1000 epochs)'
  comparisons = [
      comparison('adc', 'baseline', expect='+', family='ADC and its parts', paper=paper,
                 claim='ADC improves its method'),
      comparison('dcm', 'baseline', expect='+', family='ADC and its parts',
                 claim='DCM alone helps'),
      comparison('lpm', 'baseline', expect='+', family='ADC and its parts',
                 claim='LPM alone helps'),
      comparison('adc', 'baseline', metric='knn/k20', expect='+', claim='ADC improves kNN too',
                 name='adc - baseline (kNN)'),
  ]
  for name in stability_cells:
    weight = 'nu' if name.startswith('nu_') else 'upsilon'
    comparisons.append(comparison(name, 'adc', family='priors and weights',
                                  claim=f'stable over {weight} in 0.1-10'))
  return comparisons


def _midi():
  """The ``:midi`` study (module docstring): config, cells, figures, comparisons."""
  config = adc_paper_setting(
      load_config_module('configs/studies/cifar10.py').cifar10_run('simclr+adc'))
  cells = _ablation_cells('simclr') + [
      cell('adc_simclr_prior', {'prior.kind': 'checkpoint',
                                'prior.path': '{study}/cells/baseline/seed{seed}'}),
      cell('nu_1', {'objective.adc.nu': 1.0}), cell('upsilon_1', {'objective.adc.upsilon': 1.0})]
  figures = [figure('bar', 'linear/top1', file='ablation_linear_top1.png'),
             figure('bar', 'knn/k20', file='ablation_knn_k20.png')]
  comparisons = _comparisons(['nu_1', 'upsilon_1']) + [
      comparison('adc_simclr_prior', 'adc', family='priors and weights',
                 claim='the prior hardly matters (identity, SimCLR, CLIP similar)')]
  return config, cells, figures, comparisons


def get_config(arg=None):
  a = parse_config_arg(arg, choices=dict(size=('smoke', 'mini', 'midi', 'paper')),
                       defaults=dict(size='mini'))
  size = a['size']
  if size == 'midi':
    config, cells, figures, comparisons = _midi()
    return as_study(config, 'adc_ablation_midi', cells=cells, seeds=MIDI_SEEDS,
                    metrics=('linear/top1', 'knn/k20'), figures=figures, compare_to='baseline',
                    comparisons=comparisons)
  if size == 'paper':
    config = load_config_file('configs/simclr.py:adc')   # CIFAR-10, ResNet-18, 1000 epochs
    cells = _ablation_cells('simclr', paper=True)
    for method in ('byol', 'barlow_twins', 'mocov3', 'simsiam', 'swav'):
      cells += _ablation_cells(method, base=f'configs/{method}.py:adc', paper=True)
    cells += _sweeps(WEIGHTS, RHOS, SIGMA2S, prior_kinds=('random',))
    figures = _sweep_figures(WEIGHTS, RHOS, SIGMA2S)
    seeds = (0, 1, 2)
    comparisons = _comparisons([f'{w}_{v:g}' for w in ('nu', 'upsilon') for v in WEIGHTS
                                if v != 0.1])
  else:
    config = _digits_base(smoke=size == 'smoke')
    if size == 'smoke':
      cells = [cell('baseline', {'objective.name': 'simclr'}), cell('adc', {})]
      figures = [figure('bar', 'linear/top1', file='ablation_linear_top1.png')]
      seeds = (0,)
      comparisons = _comparisons([])[:1]
    else:
      cells = _ablation_cells('simclr') + _sweeps(MINI_WEIGHTS)
      figures = _sweep_figures(MINI_WEIGHTS)
      seeds = (0, 1, 2)
      comparisons = _comparisons([f'{w}_{v:g}' for w in ('nu', 'upsilon') for v in MINI_WEIGHTS
                                  if v != 0.1])
  name = 'adc_ablation' + ('' if size == 'paper' else f'_{size}')
  return as_study(config, name, cells=cells, seeds=seeds,
                  metrics=('linear/top1', 'knn/k20'), figures=figures, compare_to='baseline',
                  comparisons=comparisons)
