"""Shared-randomness cohorts (arXiv 2510.08852 §5): R members trained in lockstep, in one process.

Modules: ``config`` (``config.cohort``, the members' run configs), ``members`` (their shared
initial state and the lockstep step), ``tracking`` (alignment between members), ``train`` (the
cohort's training session). Imports: config, train, prior, evaluate, metrics, models, data, run,
runtime, plots.

A cohort is a normal run config (the *base*: data, model, augmentation, schedule, seed) plus
``config.cohort``::

    members            name -> overrides of the base (nested ConfigDict; :func:`cohort_config`
                       takes dotted keys). Only the objective and its numbers may differ:
                       ``objective.*``, ``optim.*``, ``method.*``, ``prior.*``,
                       ``train.online_probe_lr`` and the heads of ``model`` (projector,
                       predictor, prototypes, classifier). A member whose ``objective.name``
                       names another method gets that method's default hyperparameters and
                       settings, then its overrides; a method with a classifier (``ce``) gets
                       ``model.num_classes`` from the data.
    track_every        steps between tracked points (step 0 and the last step are tracked too)
    probe_examples     fixed held-out images (evenly spaced rows of ``probe_split``), <= 10,000
    probe_split        None: ``eval.test_split``
    knn_examples       the kNN bank: evenly spaced rows of ``eval.train_split``
    knn_k              neighbours (clipped to the bank), temperature 0.07 (docs/maths.md §4)
    rsa_examples       RSA uses the first ones of the probe set (RSA is O(n^2) in float64)
    weight_gap_layers  'backbone' (conv kernels: the paper's Σ over weight tensors) or
                       'backbone_bn' (also BatchNorm's γ, as the official
                       scripts/weight_space_coupling.py)
    dispatch           'split' (default): the views by one program, then each member's train
                       step as its own program on them; 'fused': every member's step in one
                       program (XLA computes the shared views once). The same numbers either
                       way; which is faster depends on the network and the device
                       (benchmarks/cohort_step.py)

Why in lockstep: the members must see *the same* randomness — one initial parameter copy, the same
batches in the same order, the same augmentation keys — so that their differences come from the
objectives alone. Here that holds by construction:

* **init**: every member is built from the base seed, then the backbone (and every other part
  whose structure and shapes match: projector, predictor, ...) of member 0 is copied into every
  member and the optimiser / method state re-initialised from the copy;
* **batches**: one loader, one batch per step, fed to every member;
* **augmentation keys**: the train step (``glf_jax.train.step``) draws the views from
  ``fold_in(state['rng'], state['step'])``; the cohort step hands every member member 0's ``rng``
  and ``step`` (equal by construction), so all members' views are the same computation on the
  same inputs, computed once (by its own program, or by XLA's common-subexpression elimination
  when ``dispatch='fused'``).

The state (checkpointed whole with orbax, with the loader's position) is a pytree::

    {'members': {name: TrainState}}   # each a normal glf_jax.train.state train state

Every ``track_every`` steps and at step 0, on the fixed probe set, for every pair of members: linear
CKA and RSA (Pearson, Spearman) on ``h`` and on ``z`` (where both have a projector), the weight gap
(the paper's sum over layers and the official script's mean, from the same per-layer gaps), and
each member's kNN accuracy. One JSON record per tracked step in ``tracks.jsonl`` (cut back to the
resumed step on resume), drawn in ``tracks.png``; ``summary.json`` holds the last record under
``metrics`` (keys ``pair/<a>-<b>/{cka_h, cka_z, rsa_h_pearson, rsa_h_spearman, rsa_z_*,
weight_gap_sum, weight_gap_mean}`` and ``member/<name>/knn_top1``).
``metrics.jsonl`` has each member's loss terms every ``train.log_every`` steps.
"""

from glf_jax.cohort.config import (DISPATCH, MAX_PROBE_EXAMPLES, SHARED_PARTS, WEIGHT_GAP_LAYERS,
                                   check_cohort_config, cohort_config, default_cohort_config,
                                   member_config, member_names)
from glf_jax.cohort.members import (Member, build_members, cohort_step_program, initial_state,
                                    make_cohort_step, make_split_cohort_step, share_parts)
from glf_jax.cohort.tracking import Tracker, encode, layer_gaps
from glf_jax.cohort.train import run_cohort, train_cohort
from glf_jax.plots.tracks import draw_tracks as plot_tracks
from glf_jax.plots.tracks import read_tracks

__all__ = [
    'DISPATCH', 'MAX_PROBE_EXAMPLES', 'Member', 'SHARED_PARTS', 'Tracker', 'WEIGHT_GAP_LAYERS',
    'build_members', 'check_cohort_config', 'cohort_config', 'cohort_step_program',
    'default_cohort_config', 'encode', 'initial_state', 'layer_gaps', 'make_cohort_step',
    'make_split_cohort_step', 'member_config', 'member_names', 'plot_tracks', 'read_tracks',
    'run_cohort', 'share_parts', 'train_cohort',
]
