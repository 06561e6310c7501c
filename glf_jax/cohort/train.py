"""A cohort's training: its members in lockstep in one training session, tracked as they go."""

from __future__ import annotations

from typing import Callable

import jax
import ml_collections

from glf_jax.cohort.config import check_cohort_config
from glf_jax.cohort.members import build_members, cohort_step_program, initial_state
from glf_jax.cohort.tracking import Tracker
from glf_jax.data import sources
from glf_jax.plots import tracks as plots_tracks
from glf_jax.run import layout
from glf_jax.run import metrics_log
from glf_jax.run import records
from glf_jax.run.session import Session
from glf_jax.runtime import progress


def run_cohort(config: ml_collections.ConfigDict, workdir: str, *,
               on_step: Callable[[int], bool | None] | None = None) -> dict:
  """Trains (or resumes) the cohort in ``workdir`` and returns its summary (also written to
  ``summary.json``; see the package docstring). ``on_step(step)`` (tests, drivers) is called after
  every step; returning True stops as SIGTERM does (checkpoint, then return with
  ``status='interrupted'``)."""
  return train_cohort(config, workdir, on_step=on_step)[0]


def _header(config, members, session, tracker) -> str:
  track_every = int(config.cohort.track_every)
  return (f'cohort of {len(members)} on {sources.data_name(config.data)}: '
          + ', '.join(f'{m.name} ({m.config.objective.name})' for m in members)
          + f'\n  {config.model.arch}, batch {config.train.batch_size}, {session.total_steps} '
          f'steps ({session.steps_per_epoch}/epoch), tracked every {track_every} on '
          f'{len(tracker.probe_y)} probe images  |  '
          + (f'resumed from step {session.step}' if session.step else 'starting from step 0'))


def train_cohort(config: ml_collections.ConfigDict, workdir: str, *,
                 on_step: Callable[[int], bool | None] | None = None) -> tuple[dict, dict]:
  """:func:`run_cohort`, returning ``(summary, final cohort state)``."""
  check_cohort_config(config)
  if jax.process_count() > 1:
    raise ValueError('a cohort runs in one process (its tracking reads every member on process '
                     '0); use the devices of one host (train.num_devices)')
  session = Session(config, workdir, what='cohort')
  members = build_members(config, steps_per_epoch=session.steps_per_epoch,
                          num_classes=session.num_classes, source=session.source)
  state, shared = initial_state(members)
  first = members[0].name
  state = session.open(session.replicate(state), total_steps=members[0].training.total_steps,
                       step_of=lambda s: s['members'][first]['step'],
                       meta={'members': [m.name for m in members]})
  prior_states = session.replicate({m.name: m.prior_state for m in members})
  cohort_step = cohort_step_program(members, config.cohort.dispatch)
  tracker = Tracker(config, members)
  track_every = int(config.cohort.track_every)
  tracks_path = layout.path(session.workdir, layout.TRACKS_LOG)
  if session.is_chief:
    metrics_log.trim(tracks_path, session.step)
    print(_header(config, members, session, tracker), flush=True)
  tracked_steps = ({r['step'] for r in plots_tracks.read_tracks(session.workdir)}
                   if session.is_chief else set())

  def is_tracked(step):
    return step % track_every == 0 or step == session.total_steps

  def track(step, state_now):
    if not session.is_chief or step in tracked_steps or not is_tracked(step):
      return
    record = tracker(state_now, step)
    record['epoch'] = step / session.steps_per_epoch
    metrics_log.append(tracks_path, record)
    tracked_steps.add(step)
    cka = '  '.join(f'{k.split("/")[1]} cka {v:.3f}' for k, v in record.items()
                    if k.endswith('/cka_h'))
    print(f'track step {step}: {cka}', flush=True)

  track(session.step, state)
  if session.step < session.total_steps:
    progress.announce_compiling('the cohort step')
  outcome = session.train(
      state, lambda s, batch: cohort_step(s, batch, prior_states),
      tail=lambda metrics: '  '.join(f'{name} loss {float(ms["loss"]):.4f}'
                                     for name, ms in metrics.items()),
      report_now=is_tracked, after_step=track, on_step=on_step)
  tracks = plots_tracks.read_tracks(session.workdir) if session.is_chief else []
  final = tracks[-1] if tracks else {}
  summary = {
      'mode': 'cohort', 'status': 'interrupted' if outcome.interrupted else 'finished',
      'stop_signal': outcome.stop_signal,
      'step': outcome.step, 'total_steps': session.total_steps, 'dataset': config.data.name,
      'arch': config.model.arch, 'seed': config.seed,
      'members': {m.name: {'objective': m.config.objective.name,
                           'shared_with_first': shared[m.name]} for m in members},
      'weight_gap_layers': config.cohort.weight_gap_layers,
      'probe_examples': int(len(tracker.probe_y)),
      'train_seconds': outcome.train_seconds,
      'images_per_second': (outcome.images_per_second if outcome.step > session.start_step
                            else None),
      'tracked_steps': [r['step'] for r in tracks],
      # The last tracked values (flat: 'pair/<a>-<b>/cka_h', 'member/<m>/knn_top1', ...), where
      # glf_jax.study.aggregate reads a cohort cell's metrics.
      'metrics': {k: v for k, v in final.items() if k not in ('wall_time', 'epoch')},
  }
  if session.is_chief:
    plots_tracks.draw_tracks(session.workdir, tracks)
    records.write_summary(session.workdir, summary)
  return summary, outcome.state
