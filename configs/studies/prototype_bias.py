"""Prototype representation bias against accuracy (arXiv 2510.10572 §5): augmentation recipes,
and uniform vs long-tailed classes.

    python -m glf_jax.main --config configs/studies/prototype_bias.py:mini --workdir runs/pbias_mini
    python -m glf_jax.main --config configs/studies/prototype_bias.py:paper --workdir runs/pbias

Each cell pretrains, then evaluates a linear probe, kNN and the ``prototype_bias`` evaluator
(``glf_jax/evaluate/prototype_bias.py``: ``K`` augmentations of each test image drawn with the
cell's own view recipe; the bias on raw ``h`` — the paper's units, 36.72 for its base recipe —
and on l2-normalised ``h``), with the true prototype read two ways: the class mean of the views
(``prototype_bias/normalized``) and the class mean of the clean images' features
(``prototype_bias/normalized_clean``; docs/maths.md §4.5). Each comparison of the bias is made
under both readings.

Cells (both views get the recipe):

* ``base`` — the base SimCLR recipe (crop, colour jitter, grayscale, ...; NT-Xent, τ = 0.5);
  ``cutout`` (+ a cutout of half the side, p = 0.5), ``rotation`` (+ a rotation of up to ±30°,
  p = 0.5), ``noise`` (+ Gaussian noise, σ = 0.1, p = 0.5): the paper's claim is that each
  addition raises the bias and lowers the accuracy. The strengths are this file's choice (the
  paper does not give them). Figures: accuracy against the bias (raw and normalised), one point
  per run, Pearson's r in the title and in ``results.md``.
* ``balanced`` — the balanced loss (α = 4, λ = 2) on the base recipe; ``base_lt10`` and
  ``balanced_lt10`` — the same two on a long-tailed training split (``data.long_tail_ratio =
  10``: class counts fall exponentially from the first class to a tenth for the last, Cao et al.
  2019; the linear probe also trains on it, the test split stays balanced).

* ``:smoke`` — 2 cells (base, cutout), 1 seed, 3 steps on digits, K = 2 on 32 images: the tests.
* ``:mini`` (default) — digits (``configs/studies/digits.py``: the quickstart's network and
  optimiser) for 100 steps of 256 in every cell (20 epochs of the uniform split; the long-tailed
  one has 531 images, so more epochs, the same steps), K = 8 views of all 450 test images,
  3 seeds: 7 cells, 21 runs.
* ``:midi`` — CIFAR-10 at 16 px (``configs/studies/cifar10.py``: the calibrated tier), SimCLR at
  τ = 0.5, the four recipes, K = 8 views of 2,000 test images. Every cell's encoder is also
  measured under every recipe's views (``eval.prototype_bias.variants``): the diagonal is each
  recipe's own encoder with its own views (what the paper reports), the ``base`` row one fixed
  encoder under each recipe's views (what the views alone do). Each claim a comparison with its
  verdict (``results.md``). Added after the first results (a diagnostic, not a claim of the
  paper): the surrogates' mean length (``prototype_bias/<recipe>/surrogate_norm``, docs/maths.md
  §4.5) of the base encoder under each recipe's views against under its own, to tell a bias that
  falls because the views shorten the surrogates from one that falls because images sit nearer
  their class. Data and records as ``configs/studies/adc_ablation.py``'s ``:midi``.
* ``:paper`` — CIFAR-10, ResNet-18, ``configs/simclr.py`` (NT-Xent, τ = 0.5), K = 8 on 10,000
  test images, 3 seeds. The paper's numbers (base recipe: bias 36.72, linear top-1 65.98 %) are
  for its own dataset and network, so no paper column is given.
"""

import json

from glf_jax.config import load_config_file, load_config_module, parse_config_arg
from glf_jax.study.spec import as_study, cell, comparison, figure

MIDI_SEEDS = (0, 1, 2)

VIEWS = ('augment.view1', 'augment.view2')
RECIPES = {                        # additions to the base recipe, on both views
    'base': {},
    'cutout': {'cutout_prob': 0.5, 'cutout_size': 0.5},
    'rotation': {'rotation_prob': 0.5, 'rotation_max_degrees': 30.0},
    'noise': {'noise_prob': 0.5, 'noise_std': 0.1},
}
BALANCED = {'objective.name': 'balanced', 'objective.balanced.alpha': 4.0,
            'objective.balanced.lam': 2.0, 'objective.balanced.include_positive': False,
            'objective.balanced.similarity': 'cosine'}
LONG_TAIL = {'data.long_tail_ratio': 10.0}
METRICS = ('linear/top1', 'knn/k20', 'prototype_bias/raw', 'prototype_bias/normalized',
           'prototype_bias/normalized_clean')


def _recipe(name):
  return {f'{view}.{key}': value for view in VIEWS for key, value in RECIPES[name].items()}


def _cells(recipes, long_tail_arm=True):
  cells = [cell(name, _recipe(name)) for name in recipes]
  if long_tail_arm:
    cells += [cell('balanced', BALANCED), cell('base_lt10', LONG_TAIL),
              cell('balanced_lt10', {**BALANCED, **LONG_TAIL})]
  return cells


def _figures(recipes):
  return [
      figure('scatter', 'linear/top1', x='prototype_bias/normalized', cells=list(recipes),
             file='accuracy_vs_bias_normalized.png'),
      figure('scatter', 'linear/top1', x='prototype_bias/raw', cells=list(recipes),
             file='accuracy_vs_bias_raw.png'),
      figure('bar', 'prototype_bias/normalized', file='bias_normalized.png'),
      figure('bar', 'linear/top1', file='linear_top1.png'),
  ]


def _with_control(config, recipes):
  """Every cell's encoder also measured under each recipe's views (the fixed-encoder control);
  the metrics that adds."""
  # Each variant states every extra's probability, so it is that recipe whichever cell it runs in.
  off = {'cutout_prob': 0.0, 'rotation_prob': 0.0, 'noise_prob': 0.0}
  config.eval.prototype_bias.variants = json.dumps(
      {name: {**off, **RECIPES[name]} for name in recipes})
  return (tuple(f'prototype_bias/{r}/normalized' for r in recipes)
          + tuple(f'prototype_bias/{r}/raw' for r in recipes)
          + tuple(f'prototype_bias/{r}/normalized_clean' for r in recipes))


def _comparisons(recipes, long_tail_arm):
  """Each richer recipe against ``base``: accuracy, the bias of its own encoder, and the bias of
  the base encoder under its views (the control); with the long-tailed arm, the balanced loss
  against NT-Xent on each split and the long-tailed split against the uniform one."""
  out = []
  for r in recipes[1:]:
    out += [
        comparison(r, 'base', expect='-', family='accuracy', name=f'{r} - base (accuracy)',
                   paper='base recipe highest: 65.98 % (ImageNet subset)',
                   claim='a richer recipe lowers accuracy'),
        comparison(r, 'base', metric='prototype_bias/normalized', expect='+',
                   family='bias, each recipe its own encoder', name=f'{r} - base (own encoder)',
                   paper='base recipe lowest: 36.72 (raw)',
                   claim='a richer recipe raises the prototype bias'),
        comparison('base', 'base', metric=f'prototype_bias/{r}/normalized',
                   reference_metric='prototype_bias/base/normalized', expect='+',
                   family='bias, one fixed encoder', name=f'{r} views - base views (base encoder)',
                   claim='the views alone raise the bias (control)'),
        # The true prototype read over the data (the clean images' class means): module docstring.
        comparison(r, 'base', metric='prototype_bias/normalized_clean', expect='+',
                   family='clean-prototype bias, each recipe its own encoder',
                   name=f'{r} - base (own encoder, clean prototype)',
                   paper='base recipe lowest: 36.72 (raw)',
                   claim='a richer recipe raises the prototype bias'),
        comparison('base', 'base', metric=f'prototype_bias/{r}/normalized_clean',
                   reference_metric='prototype_bias/base/normalized_clean', expect='+',
                   family='clean-prototype bias, one fixed encoder',
                   name=f'{r} views - base views (base encoder, clean prototype)',
                   claim='the views alone raise the bias (control)'),
    ]
  if long_tail_arm:
    out += [
        comparison('balanced_lt10', 'base_lt10', expect='+', family='balanced loss',
                   claim='the balanced loss helps on long-tailed data'),
        comparison('balanced', 'base', expect='+', family='balanced loss',
                   claim='the balanced loss helps on uniform data'),
        comparison('base', 'base_lt10', expect='+',
                   claim='uniform training data beats long-tailed (confounded here: the '
                         'long-tailed split is a subset, fewer images)'),
    ]
  return out


def _midi():
  """The ``:midi`` study (module docstring): config, cells, metrics, figures, comparisons."""
  config = load_config_module('configs/studies/cifar10.py').cifar10_run('simclr')
  config.objective.simclr.temperature = 0.5
  config.eval.prototype_bias.examples = 2000
  recipes = tuple(RECIPES)
  metrics = (METRICS + _with_control(config, recipes)
             + tuple(f'prototype_bias/{r}/surrogate_norm' for r in recipes))
  # Added after the first results (module docstring): a diagnostic of the fixed-encoder control.
  shrinkage = [comparison('base', 'base', metric=f'prototype_bias/{r}/surrogate_norm',
                          reference_metric='prototype_bias/base/surrogate_norm',
                          family='surrogate length, one fixed encoder (diagnostic)',
                          name=f'{r} views - base views (base encoder, surrogate length)',
                          claim='the views alone shorten the surrogates (diagnostic, added '
                                'after the first result)')
               for r in recipes[1:]]
  return (config, _cells(recipes, long_tail_arm=False), metrics, _figures(recipes),
          _comparisons(recipes, long_tail_arm=False) + shrinkage)


def get_config(arg=None):
  a = parse_config_arg(arg, choices=dict(size=('smoke', 'mini', 'midi', 'paper')),
                       defaults=dict(size='mini'))
  size = a['size']
  if size == 'midi':
    config, cells, metrics, figures, comparisons = _midi()
    config.eval.evaluators = ('linear', 'knn', 'prototype_bias')
    config.eval.prototype_bias.view = 'view1'
    return as_study(config, 'prototype_bias_midi', cells=cells, seeds=MIDI_SEEDS,
                    metrics=metrics, figures=figures, compare_to='base',
                    comparisons=comparisons)
  if size == 'paper':
    config = load_config_file('configs/simclr.py')   # CIFAR-10, ResNet-18, 1000 epochs
    config.objective.simclr.temperature = 0.5
    config.eval.prototype_bias.examples = 10_000
    recipes, seeds = tuple(RECIPES), (0, 1, 2)
    cells = _cells(recipes)
    metrics = METRICS + _with_control(config, recipes)
    comparisons = _comparisons(recipes, long_tail_arm=True)
  else:
    config = load_config_file('configs/studies/digits.py:simclr'
                              + (',smoke' if size == 'smoke' else ''))
    config.objective.simclr.temperature = 0.5
    if size == 'smoke':
      config.eval.prototype_bias.augmentations = 2
      config.eval.prototype_bias.examples = 32
      recipes, seeds = ('base', 'cutout'), (0,)
      cells = _cells(recipes, long_tail_arm=False)
      metrics, comparisons = METRICS, _comparisons(recipes, long_tail_arm=False)[:2]
    else:
      config.train.num_steps = 100      # every cell, also the smaller long-tailed split
      config.eval.prototype_bias.examples = 450
      recipes, seeds = tuple(RECIPES), (0, 1, 2)
      cells = _cells(recipes)
      metrics = METRICS + _with_control(config, recipes)
      comparisons = _comparisons(recipes, long_tail_arm=True)
  config.eval.evaluators = ('linear', 'knn', 'prototype_bias')
  config.eval.prototype_bias.view = 'view1'
  name = 'prototype_bias' + ('' if size == 'paper' else f'_{size}')
  return as_study(config, name, cells=cells, seeds=seeds,
                  metrics=metrics, figures=_figures(recipes), compare_to='base',
                  comparisons=comparisons)
