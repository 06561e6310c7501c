"""The main job end to end: pretrain, resume after SIGKILL / SIGTERM, refuse changed configs,
stop on non-finite losses, evaluate and write summary.json. On the made CIFAR-10-sized image folder
of tests/conftest.py (400 + 40 JPEGs)."""

import json
import math
import os
import pathlib
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glf_jax.evaluate import encoder as encoder_lib
from glf_jax.run import checkpoint
from glf_jax import main
from glf_jax.constraints import CONSTRAINTS
from glf_jax.losses import glf
from glf_jax.run import metrics_log
from glf_jax.run import session as session_lib
from glf_jax.train import step as step_lib
from glf_jax.train.pretrain import pretrain
from tests.conftest import child_lines, run_child

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOTAL_STEPS = 20  # the kill comes at step 10, after the checkpoint of step 8


def _folder_overrides(root, **extra):
  settings = {
      'data.name': 'image_folder', 'data.root': str(root), 'model.arch': 'resnet_tiny',
      'model.projector_hidden_dim': 32, 'model.projection_dim': 16, 'train.batch_size': 32,
      'train.num_steps': TOTAL_STEPS, 'train.log_every': 2, 'checkpoint.every_steps': 4,
      'eval.linear.epochs': 20, 'eval.alignment.examples': 32, 'eval.batch_size': 64,
      'optim.name': 'sgd', 'optim.base_learning_rate': 0.1, 'optim.warmup_epochs': 0.5,
      'eval.embedding_examples': 0,  # no t-SNE picture: these tests are about the run
  }
  settings.update(extra)
  return [f'--config.{k}={v}' for k, v in settings.items()]


def _command(workdir, overrides):
  return [sys.executable, '-m', 'glf_jax.main', '--config', 'configs/simclr.py:adc',
          '--workdir', str(workdir), *overrides]


def _env():
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = str(ROOT)
  env.setdefault('GLF_JAX_TEST_CACHE', str(ROOT / '.jax_cache'))
  # The session's persistent compilation cache: a run's second and later invocations (the
  # reference, the killed run and its resume) reuse the first one's compiled steps.
  env.setdefault('JAX_COMPILATION_CACHE_DIR', env['GLF_JAX_TEST_CACHE'])
  env.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
  return env


def _final_params(workdir):
  _, _, params, batch_stats, step = encoder_lib.load_encoder(str(workdir))
  return step, [np.asarray(x) for x in jax.tree.leaves((params, batch_stats))]


def _run_and_kill(workdir, overrides, sig, after_line):
  """Starts the job, sends ``sig`` as soon as a progress line starts with ``after_line``."""
  proc = subprocess.Popen(_command(workdir, overrides), cwd=ROOT, env=_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  output = []
  sent = False
  for line in child_lines(proc):
    output.append(line)
    if not sent and line.startswith(after_line):
      proc.send_signal(sig)
      sent = True
  assert sent, ''.join(output)
  return proc.returncode, ''.join(output)


def test_killed_run_resumes_exactly_then_evaluates(image_root, tmp_path):
  overrides = _folder_overrides(image_root, **{'data.cache_dir': str(tmp_path / 'cache')})
  # Uninterrupted reference (no evaluation, to save time).
  reference = tmp_path / 'reference'
  done = run_child(_command(reference, overrides + ['--config.train.eval_after=False']),
                   cwd=ROOT, env=_env())
  assert done.returncode == 0, done.stdout + done.stderr

  # SIGKILL in the middle of training, then the same command again.
  resumed = tmp_path / 'resumed'
  code, output = _run_and_kill(resumed, overrides, signal.SIGKILL, f'step 10/{TOTAL_STEPS}')
  assert code == -signal.SIGKILL, output
  assert not (resumed / 'summary.json').exists()
  again = run_child(_command(resumed, overrides), cwd=ROOT, env=_env())
  assert again.returncode == 0, again.stdout + again.stderr
  assert 'resumed from step' in again.stderr + again.stdout or 'step 12/' not in again.stdout

  ref_step, ref_leaves = _final_params(reference)
  step, leaves = _final_params(resumed)
  assert ref_step == step == TOTAL_STEPS
  for a, b in zip(ref_leaves, leaves):
    np.testing.assert_array_equal(a, b)

  summary = json.loads((resumed / 'summary.json').read_text())
  assert summary['status'] == 'finished' and summary['step'] == TOTAL_STEPS
  assert summary['objective'] == 'simclr+adc'
  results = summary['pretrained']
  for key in ('linear/top1', 'linear/top5', 'knn/k20', 'knn/k200', 'geometry/compactness',
              'alignment/alignment', 'alignment/uniformity'):
    assert key in results and np.isfinite(results[key]), key
  assert 0.0 <= results['linear/top1'] <= results['linear/top5'] <= 1.0
  records = [json.loads(l) for l in (resumed / 'metrics.jsonl').read_text().splitlines()]
  # Training records, then the end-of-training evaluation's record at the last step.
  lines = [r for r in records if 'evaluation' not in r]
  assert records[-1]['step'] == TOTAL_STEPS and 'eval/pretrained/linear/top1' in records[-1]
  assert lines[-1]['step'] == TOTAL_STEPS and {'loss', 'simclr', 'adc', 'lr'} <= set(lines[-1])
  # Steps logged after the last checkpoint before the kill are not logged twice on resume (a
  # 20-step run logs every step: at least MIN_LOGGED_POINTS records, whatever train.log_every).
  steps = [line['step'] for line in lines]
  assert steps == sorted(set(steps)) == list(range(1, TOTAL_STEPS + 1)), steps
  assert all(isinstance(line['wall_time'], float) for line in lines)
  assert any(p.name.startswith('events.out.tfevents')
             for p in (resumed / 'tensorboard').iterdir())


@pytest.mark.parametrize('sig,code', [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_save_and_exit_cleanly(image_root, tmp_path, sig, code):
  """SIGTERM (a scheduler's pre-emption) exits 0; Ctrl-C exits 130; both save, print one line."""
  overrides = _folder_overrides(image_root, **{'data.cache_dir': str(tmp_path / 'cache'),
                                               'checkpoint.every_steps': 1000})
  returncode, output = _run_and_kill(tmp_path / 'run', overrides, sig, f'step 6/{TOTAL_STEPS}')
  assert returncode == code, output
  assert 'Traceback' not in output and 'interrupted at step' in output, output
  summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  assert summary['status'] == 'interrupted'
  assert summary['stop_signal'] == signal.Signals(sig).name
  step, _ = _final_params(tmp_path / 'run')
  # The checkpoint is the step where the loop stopped (no periodic one before it).
  assert 6 <= step == summary['step'] < TOTAL_STEPS


def test_second_ctrl_c_aborts_at_once_without_a_traceback(image_root, tmp_path):
  overrides = _folder_overrides(image_root, **{'data.cache_dir': str(tmp_path / 'cache')})
  proc = subprocess.Popen(_command(tmp_path / 'run', overrides), cwd=ROOT, env=_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  output = []
  for line in child_lines(proc):
    output.append(line)
    if line.startswith(f'step 4/{TOTAL_STEPS}'):
      proc.send_signal(signal.SIGINT)
    if line.startswith('Ctrl-C: saving'):
      proc.send_signal(signal.SIGINT)
  output = ''.join(output)
  assert proc.returncode == 130, output
  assert 'aborted' in output and 'Traceback' not in output, output


def test_metrics_log_tolerates_a_torn_line_and_is_trimmed_to_the_resumed_step(tmp_path, caplog):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
  records = metrics_log.read(str(path))
  assert [r['step'] for r in records] == [1, 2]
  assert str(path) in caplog.text and 'incomplete' in caplog.text
  assert metrics_log.trim(str(path), 1) == 2
  assert [json.loads(l)['step'] for l in path.read_text().splitlines()] == [1]
  assert metrics_log.trim(str(path), 1) == 0  # nothing more to drop


def test_metrics_log_lines_that_are_json_but_not_records_are_skipped(tmp_path, caplog):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 1, "loss": 2.0}\n[1, 2, 3]\nnull\n{"step": "two"}\n'
                  '{"step": 3, "loss": 1.0}\n')
  assert [r['step'] for r in metrics_log.read(str(path))] == [1, 3]
  for number in (2, 3, 4):
    assert f'{path}: line {number} is not a record' in caplog.text
  assert metrics_log.trim(str(path), 1) == 4  # a resume cuts them with the later steps
  assert [json.loads(l) for l in path.read_text().splitlines()] == [{'step': 1, 'loss': 2.0}]


def digits_config(**train):
  sys.path.insert(0, str(ROOT))
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  config = quickstart.get_config()
  config.train.num_steps = 4
  config.train.batch_size = 64
  config.train.eval_after = False
  for key, value in train.items():
    config.train[key] = value
  return config


def test_changed_config_is_refused_on_resume_unless_allowed(tmp_path):
  config = digits_config()
  main.run(config, str(tmp_path))
  changed = digits_config(num_steps=6)
  changed.optim.base_learning_rate = 0.5
  with pytest.raises(session_lib.ConfigChangedError, match='optim.base_learning_rate'):
    main.run(changed, str(tmp_path))
  changed.allow_config_change = True
  summary = main.run(changed, str(tmp_path))
  assert summary['step'] == 6


def test_nonfinite_losses_stop_the_run_with_the_terms(tmp_path, monkeypatch):
  monkeypatch.setitem(CONSTRAINTS, 'always_nan', glf.Constraint('always_nan', glf.Term(
      lambda o, b: (jnp.nan * jnp.sum(o['z1']), {}), {})))
  config = digits_config(num_steps=20, max_nonfinite_in_a_row=3)
  config.objective.name = 'simclr+always_nan'
  with pytest.raises(session_lib.NonFiniteLossError, match=r'3 non-finite losses in a row.*step 3'):
    main.run(config, str(tmp_path))
  summary = json.loads((tmp_path / 'summary.json').read_text())  # the record exists
  assert summary['status'] == 'stopped: non-finite' and summary['step'] == 3
  assert summary['checkpoint_step'] is None and 'non-finite losses' in summary['error']


def test_a_nonfinite_gradient_of_a_finite_loss_is_named_as_such(tmp_path, monkeypatch):
  # sqrt at 0: the value 0, the gradient inf * 0 = NaN.
  monkeypatch.setitem(CONSTRAINTS, 'nan_gradient', glf.Constraint('nan_gradient', glf.Term(
      lambda o, b: (jnp.sqrt(0.0 * jnp.sum(o['z1']) ** 2), {}), {})))
  config = digits_config(num_steps=20, max_nonfinite_in_a_row=2)
  config.objective.name = 'simclr+nan_gradient'
  with pytest.raises(session_lib.NonFiniteLossError,
                     match=r'2 non-finite gradients \(the loss itself finite\) in a row.*step 2'):
    main.run(config, str(tmp_path))


def _streak_session(tmp_path, *, first_bad, every, num_steps=40, log_every=1,
                    steps_per_call=None):
  """A session over digits whose jitted step is free and non-finite from step ``first_bad`` on
  (its metrics: the loss and the streak); the step and its ``steps_per_call`` form."""
  config = digits_config(num_steps=num_steps, max_nonfinite_in_a_row=3, log_every=log_every,
                         steps_per_call=steps_per_call)
  config.checkpoint.every_steps = every
  session = session_lib.Session(config, str(tmp_path))
  state = session.open(session.replicate({'step': jnp.int32(0), 'streak': jnp.int32(0)}),
                       total_steps=num_steps, step_of=lambda s: s['step'])

  def step(state, batch):
    step = state['step'] + 1
    streak = jnp.where(step >= first_bad, state['streak'] + 1, 0)
    loss = jnp.where(streak > 0, jnp.nan, jnp.mean(batch['image'].astype(jnp.float32)))
    return {'step': step, 'streak': streak}, {'loss': loss, 'nonfinite_in_a_row': streak}

  return session, state, jax.jit(step), jax.jit(step_lib.scan_steps(step))


@pytest.mark.parametrize('first_bad,every,steps_per_call',
                         [(6, 2, None), (3, 1000, None), (3, 1000, 4), (6, 8, 4), (6, 2, 4)])
def test_a_streak_read_late_stops_at_its_step_and_keeps_the_checkpoint_before_it(
    tmp_path, first_bad, every, steps_per_call):
  """The guard reads steps' values late and in groups, several steps a call or one; the run
  still stops at the step the streak reached the limit, and no checkpoint is saved at or after
  that step (with 4 steps a call, (6, 8): the call that reaches the limit ends at a checkpoint
  step, 8)."""
  session, state, step_fn, steps_fn = _streak_session(
      tmp_path, first_bad=first_bad, every=every, steps_per_call=steps_per_call)
  last = first_bad + 2  # the streak reaches 3 here
  kept = (last - 1) // every * every or None  # the last checkpoint before it (8 is one: not kept)
  with pytest.raises(session_lib.NonFiniteLossError,
                     match=(rf'^3 non-finite losses in a row, the last at step {last}; loss '
                            rf"terms: {{'loss': nan, 'nonfinite_in_a_row': 3.0}}\. The updates "
                            rf'were skipped; the last good checkpoint \(step {kept}\) is kept')):
    session.train(state, step_fn, steps_fn=steps_fn)
  saved = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit())
  assert saved == ([s for s in (2, 4, 6) if s <= kept] if kept else []), saved
  # The logs hold every step before the stop, read late but in order.
  steps = [r['step'] for r in metrics_log.read(str(tmp_path / 'metrics.jsonl'))]
  assert steps == list(range(1, last)), steps


def test_metrics_are_read_a_few_steps_at_a_time_behind_the_dispatched_steps(tmp_path,
                                                                            monkeypatch):
  session, state, step_fn, _ = _streak_session(tmp_path, first_bad=10**6, every=1000,
                                               log_every=1000)
  dispatched, reads = [0], []
  real_get = session_lib.jax.device_get

  def counting_step(state, batch):
    dispatched[0] += 1
    return step_fn(state, batch)

  def recording_get(tree):
    if isinstance(tree, list):  # the guard's values of some steps (not a log step's metrics)
      reads.append((dispatched[0], len(tree)))  # (steps dispatched, steps read)
    return real_get(tree)

  monkeypatch.setattr(session_lib.jax, 'device_get', recording_get)
  outcome = session.train(state, counting_step)
  assert outcome.step == 40
  guard_reads = [r for r in reads if r[1]]
  lag, group = session_lib.METRICS_LAG, session_lib.METRICS_READ_EVERY
  # Every read but the last (at the end) takes a group of steps, the newest of them `lag` behind
  # the last dispatched step: the device always had that many steps queued.
  assert [n for _, n in guard_reads[:-1]] == [group] * (len(guard_reads) - 1), guard_reads
  read_so_far = 0
  for steps_dispatched, count in guard_reads[:-1]:
    read_so_far += count
    assert steps_dispatched - read_so_far == lag, guard_reads
  assert sum(n for _, n in guard_reads) == 40


def test_quickstart_shrunk_compares_pretrained_with_random_init(tmp_path):
  # 4 steps: the train step of digits_config() (and of the tests below), compiled once a session.
  config = digits_config(num_steps=4, eval_after=True)
  config.eval.linear.epochs = 10
  config.eval.max_test_examples = 90  # 90 of the 450 test digits (evenly spaced, every class)
  config.eval.embedding_examples = 0  # no t-SNE map (tests/test_run_records.py draws one)
  summary = main.run(config, str(tmp_path))
  saved = json.loads((tmp_path / 'summary.json').read_text())
  assert saved['status'] == 'finished' and saved['step'] == 4
  for column in (summary['raw_pixels'], summary['random_init'], summary['pretrained']):
    assert 0.0 <= column['linear/top1'] <= 1.0 and 0.0 <= column['knn/k20'] <= 1.0
  assert saved['random_init'] != saved['pretrained']
  # The raw pixels: the floor of the table (the digits' pixels alone give a good kNN).
  assert saved['raw_pixels']['knn/k20'] > 0.9
  (evaluation,) = saved['evaluations'].values()
  assert list(evaluation) == ['raw_pixels', 'random_init', 'pretrained']
  assert (tmp_path / 'curves.png').exists() and not (tmp_path / 'embedding.png').exists()


@pytest.mark.parametrize('override,message', [
    ('--config.nope=1', 'nope'),
    ('--config.objective.name=simclr+magic', 'constraint term'),
    ('--config.objective.name=moco', 'method'),
    ('--config.objective.adc.rho=2.0', 'rho must be > 2'),
    ('--config.data.name=imagenet2012', 'tfds'),
])
def test_command_line_rejects_bad_config(override, message, tmp_path):
  result = run_child(
      [sys.executable, '-m', 'glf_jax.main', '--config', 'configs/quickstart.py', override,
       '--config.train.num_steps=1', f'--workdir={tmp_path}'], cwd=ROOT, env=_env())
  assert result.returncode != 0
  assert message in result.stderr.lower() or message in result.stderr


def test_eval_mode_loads_the_encoder_from_its_model_config_and_refuses_old_layouts(tmp_path):
  """A BYOL run (EMA target in its state) is evaluated without rebuilding its training."""
  run_dir = tmp_path / 'run'
  config = digits_config(num_steps=2)
  config.objective.name = 'byol'
  config.method = {'ema_base': 0.99}
  config.model.predictor_layers = 2
  main.run(config, str(run_dir))
  saved, _, params, batch_stats, step = encoder_lib.load_encoder(str(run_dir))
  assert step == 2 and saved.objective.name == 'byol'
  assert sorted(params.keys()) == ['backbone', 'predictor', 'projector']

  evaluation = digits_config()
  evaluation.mode = 'knn'
  evaluation.eval.checkpoint_dir = str(run_dir)
  summary = main.run(evaluation, str(tmp_path / 'knn'))
  assert summary['step'] == 2 and 0.0 <= summary['pretrained']['knn/k20'] <= 1.0
  assert summary['raw_pixels']['knn/k20'] > 0.9  # the table's raw-pixel column

  # A checkpoint written before methods became units (no 'format' in its meta) is refused.
  meta_file = run_dir / 'checkpoints' / '2' / 'meta' / 'metadata'
  meta = json.loads(meta_file.read_text())
  del meta['format']
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(checkpoint.CheckpointFormatError, match='layout 1.*Pretrain again'):
    encoder_lib.load_encoder(str(run_dir))
  with pytest.raises(checkpoint.CheckpointFormatError, match='layout 1'):
    main.run(config, str(run_dir))


# ------------------------------------------------------------------------------------------------
# What a person following a run sees (glf_jax.progress), and training time across resumes

import re  # pylint: disable=g-import-not-at-top,g-bad-import-order,wrong-import-position
import shutil  # pylint: disable=g-import-not-at-top,g-bad-import-order,wrong-import-position

from glf_jax.runtime import progress  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_banner_then_progress_lines_by_time_while_metrics_stay_at_log_every(tmp_path, capsys,
                                                                            monkeypatch):
  monkeypatch.setattr(progress, 'INTERVAL_S', 0.0)  # a plain line at every step, by wall time
  # 4 steps would otherwise all be logged (at least 20 records per run).
  monkeypatch.setattr(session_lib, 'MIN_LOGGED_POINTS', 1)
  pretrain(digits_config(num_steps=4, log_every=1000), str(tmp_path))
  out = capsys.readouterr().out
  assert 'starting from step 0' in out
  assert (out.index('pretraining simclr+adc on digits')
          < out.index('compiling the train step (the first step waits for XLA')
          < out.index('step 1/4')), out
  assert re.findall(r'^step (\d+)/4  epoch ', out, flags=re.M) == ['1', '2', '3', '4'], out
  # The first step compiles: no rate and no ETA from it.
  assert 'step 1/4  epoch 0.05  - img/s  ETA -:--:--  |  loss ' in out, out
  records = metrics_log.read(str(tmp_path / 'metrics.jsonl'))
  assert [r['step'] for r in records] == [1, 4]  # log_every (and the first and last steps) only


def test_a_short_run_logs_its_first_step_and_at_least_20_records():
  assert session_lib.logging_interval(50, 10_000) == 50
  assert session_lib.logging_interval(50, 200) == 10  # 20 records, not 4
  assert session_lib.logging_interval(50, 7) == 1


def test_rerun_of_a_finished_run_reports_its_original_training_time(tmp_path):
  config = digits_config()
  first = pretrain(config, str(tmp_path))
  assert 0 < first.train_seconds <= first.session_seconds and first.images_per_second > 0
  meta = checkpoint.read_meta(checkpoint.checkpoint_dir(str(tmp_path)))
  assert meta['images_trained'] == 4 * 64 and meta['train_seconds'] == first.train_seconds
  again = pretrain(config, str(tmp_path))  # nothing left to train
  assert int(again.state['step']) == 4
  assert again.train_seconds == first.train_seconds
  assert again.images_per_second == first.images_per_second > 0


def test_training_time_accumulates_over_an_interrupted_and_resumed_run(tmp_path, monkeypatch):
  config = digits_config()
  real_train = session_lib.Session.train

  def sigterm_after_the_second_step(self, state, step_fn, **kwargs):
    # (Not from inside the data pipeline: the batches are placed on the devices steps ahead.)
    def on_step(step):
      if step == 2:
        signal.raise_signal(signal.SIGTERM)  # the loop saves step 2 and returns
    return real_train(self, state, step_fn, **kwargs, on_step=on_step)

  monkeypatch.setattr(session_lib.Session, 'train', sigterm_after_the_second_step)
  first = pretrain(config, str(tmp_path / 'run'))
  monkeypatch.undo()
  assert first.interrupted and int(first.state['step']) == 2
  meta = checkpoint.read_meta(checkpoint.checkpoint_dir(str(tmp_path / 'run')))
  assert meta['images_trained'] == 2 * 64 and meta['train_seconds'] == first.train_seconds
  shutil.copytree(tmp_path / 'run', tmp_path / 'old')
  resumed = pretrain(config, str(tmp_path / 'run'))
  assert int(resumed.state['step']) == 4 and not resumed.interrupted
  assert resumed.train_seconds > first.train_seconds
  assert resumed.images_per_second == pytest.approx(4 * 64 / resumed.train_seconds)

  # A checkpoint written before these totals were stored: this session's time and images only.
  meta_file = tmp_path / 'old' / 'checkpoints' / '2' / 'meta' / 'metadata'
  meta = json.loads(meta_file.read_text())
  del meta['train_seconds'], meta['images_trained']
  meta_file.write_text(json.dumps(meta))
  old = pretrain(config, str(tmp_path / 'old'))
  assert int(old.state['step']) == 4 and old.train_seconds <= old.session_seconds
  assert old.images_per_second == pytest.approx(2 * 64 / old.train_seconds)


@pytest.mark.slow
@pytest.mark.optimized  # 30 steps: runs far longer than it compiles (148 -> ~55 s)
def test_steps_per_call_runs_whole_windows_equals_one_step_per_call_and_resumes_exactly(
    tmp_path, monkeypatch):
  """train.steps_per_call=4 over 10 steps, a checkpoint every 8: calls of 4 steps for the windows
  [1, 4] and [5, 8], then one step a call (a window of 4 from 8 passes the end); the result is
  one step per call's up to float rounding (XLA compiles the loop's body on its own), and a run
  interrupted after step 4 resumes to the uninterrupted run's parameters bit for bit."""
  real_train = session_lib.Session.train
  calls = []

  def recording(self, state, step_fn, *, steps_fn=None, stop_at=None, **kwargs):
    def one(s, batch):
      calls.append(1)
      return step_fn(s, batch)

    def several(s, batches):
      calls.append(len(batches))
      return steps_fn(s, batches)

    def on_step(step):
      return step == stop_at
    return real_train(self, state, one, steps_fn=several, on_step=on_step, **kwargs)

  def run(name, steps_per_call, stop_at=None):
    calls.clear()
    monkeypatch.setattr(session_lib.Session, 'train',
                        lambda *a, **k: recording(*a, stop_at=stop_at, **k))
    config = digits_config(num_steps=10, steps_per_call=steps_per_call)
    config.checkpoint.every_steps = 8
    outcome = pretrain(config, str(tmp_path / name))
    return outcome, list(calls)

  _, one_calls = run('one', None)
  assert one_calls == [1] * 10
  whole, whole_calls = run('four', 4)
  assert whole_calls == [4, 4, 1, 1]
  losses = {name: [r['loss'] for r in metrics_log.read(str(tmp_path / name / 'metrics.jsonl'))]
            for name in ('one', 'four')}
  assert len(losses['four']) == 10
  # Rounding, which training amplifies: over 10 steps the losses part by up to 1.5e-4 relative
  # (jax 0.10.1; 1e-6 with 0.10.2) and the parameters by 2.5e-4 of their norm. A call that ran
  # the wrong batches or skipped a step parts the losses by far more from step 2 on.
  np.testing.assert_allclose(losses['four'], losses['one'], rtol=1e-3)
  one, four = _final_params(tmp_path / 'one')[1], _final_params(tmp_path / 'four')[1]
  gap = math.sqrt(sum(float(np.sum((a.astype(np.float64) - b) ** 2)) for a, b in zip(one, four)))
  assert gap <= 5e-3 * math.sqrt(sum(float(np.sum(b.astype(np.float64) ** 2)) for b in one))

  stopped, stopped_calls = run('resumed', 4, stop_at=4)
  assert stopped.interrupted and int(stopped.state['step']) == 4 and stopped_calls == [4]
  _, resumed_calls = run('resumed', 4)
  assert resumed_calls == [4, 1, 1]
  assert int(whole.state['step']) == 10
  for a, b in zip(_final_params(tmp_path / 'four')[1], _final_params(tmp_path / 'resumed')[1]):
    np.testing.assert_array_equal(a, b)
