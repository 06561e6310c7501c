"""A run's records are never overwritten or mis-reported: summary.json merges every invocation,
the original config.json is kept, one run per workdir, cached features follow the encoder and the
data's content."""

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from glf_jax import main
from glf_jax.run import records as run_records
from glf_jax.run import lock
from tests import test_train_loop as train_loop_tests

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _digits_config(**train):
  config = train_loop_tests.digits_config(**train)
  config.eval.linear.epochs = 5
  # 90 of the 450 test digits (evenly spaced, every class): an evaluated run's t-SNE map of the
  # test features (glf_jax.plots.embed_2d) otherwise takes most of a test's time.
  config.eval.max_test_examples = 90
  return config


# --- one run per workdir ------------------------------------------------------------------------

def test_a_held_workdir_refuses_a_second_run_naming_the_holder(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from glf_jax.run import lock\n'
       f'with lock.hold({str(tmp_path)!r}):\n  print("held", flush=True); sys.stdin.read()'],
      cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
      env={**os.environ, 'PYTHONPATH': str(ROOT)})  # holds the lock until it is killed
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(lock.WorkdirBusyError, match=rf'in use by another run: pid '
                       rf'{holder.pid} on .*use another --workdir'):
      with lock.hold(str(tmp_path)):
        pass
  finally:
    holder.kill()  # SIGKILL: no clean release, the kernel drops the flock
    holder.wait()
  # The dead holder's record is still in the file: the next run takes over, with a warning.
  assert json.loads((tmp_path / '.lock').read_text())['pid'] == holder.pid
  with lock.hold(str(tmp_path)):
    assert json.loads((tmp_path / '.lock').read_text())['pid'] == os.getpid()
  assert (tmp_path / '.lock').read_text() == ''  # released cleanly


def test_lock_is_reentrant_across_sequential_runs_and_disabled_off_chief(tmp_path):
  for _ in range(2):
    with lock.hold(str(tmp_path)):
      pass
  with lock.hold(str(tmp_path), enabled=False):
    assert not (tmp_path / '.lock').exists() or (tmp_path / '.lock').read_text() == ''


def test_a_lock_file_that_is_not_the_locks_own_is_refused_and_left_untouched(tmp_path):
  victim = tmp_path / 'victim.txt'
  victim.write_text('precious')
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / '.lock').symlink_to(victim)
  with pytest.raises(lock.LockFileError, match=rf'{workdir / ".lock"} is a symbolic link \(to '
                     rf'{victim}\).*remove it'):
    with lock.hold(str(workdir)):
      pass
  assert victim.read_text() == 'precious'
  (workdir / '.lock').unlink()
  os.link(victim, workdir / '.lock')  # a hard link: emptying it empties the victim
  with pytest.raises(lock.LockFileError, match='has 2 names'):
    with lock.hold(str(workdir)):
      pass
  assert victim.read_text() == 'precious'
  (workdir / '.lock').unlink()
  (workdir / '.lock').write_text('a file of somebody else')
  with pytest.raises(lock.LockFileError, match='something other than a lock record'):
    with lock.hold(str(workdir)):
      pass
  assert (workdir / '.lock').read_text() == 'a file of somebody else'
  (workdir / '.lock').unlink()
  (workdir / '.lock').mkdir()
  with pytest.raises(lock.LockFileError, match='is a directory'):
    with lock.hold(str(workdir)):
      pass


def test_runner_refuses_a_workdir_that_is_a_file_and_removes_a_workdir_it_created(tmp_path):
  a_file = tmp_path / 'file'
  a_file.write_text('x')
  with pytest.raises(NotADirectoryError, match='is a file'):
    main.run(_digits_config(), str(a_file))
  config = _digits_config()
  config.prior.kind = 'checkpoint'
  config.prior.path = str(tmp_path / 'no_such_run')
  fresh = tmp_path / 'fresh'
  with pytest.raises((FileNotFoundError, ValueError)):
    main.run(config, str(fresh))
  assert not fresh.exists()


# --- summary.json, evaluations and config.json ---------------------------------------------------

def test_merging_keeps_the_training_record_and_every_evaluation(tmp_path):
  workdir = str(tmp_path)
  record = {'mode': 'pretrain', 'dataset': 'digits', 'step': 4, 'train_seconds': 12.5,
            'pretrained': {'knn/k20': 0.5}}
  run_records.record_pretraining(workdir, record)
  knn = {'mode': 'knn', 'step': 4, 'dataset': 'digits', 'pretrained': {'knn/k20': 0.6}}
  key = run_records.evaluation_key('knn', 'digits', workdir, 4)
  merged = run_records.record_evaluation(workdir, key, knn)
  assert merged['train_seconds'] == 12.5 and merged['pretrained'] == {'knn/k20': 0.5}
  assert merged['evaluations'][key] == knn
  assert len(merged['evaluations']) == 2  # pretraining's own evaluation is one of them
  # Re-training (a resume) rewrites the training record, keeps the knn evaluation.
  merged = run_records.record_pretraining(workdir, {**record, 'step': 8, 'pretrained': {}})
  assert merged['step'] == 8 and key in merged['evaluations']
  on_disk = json.loads((tmp_path / 'summary.json').read_text())
  assert on_disk == json.loads(json.dumps(merged))

  # A workdir that only evaluates: the latest evaluation is the top level, all are kept.
  other = tmp_path / 'probe'
  run_records.record_evaluation(str(other), 'a', {'mode': 'knn', 'pretrained': {'x': 1.0}})
  merged = run_records.record_evaluation(str(other), 'b', {'mode': 'linear_probe',
                                                           'pretrained': {'y': 2.0}})
  assert merged['mode'] == 'linear_probe' and sorted(merged['evaluations']) == ['a', 'b']


@pytest.mark.parametrize('damage', ['{"mode": "pretrain", "step": 4, "evalu', '[1, 2, 3]'])
def test_an_unreadable_summary_is_kept_aside_not_overwritten(tmp_path, caplog, damage):
  (tmp_path / 'summary.json').write_text(damage)
  assert run_records.read_summary(str(tmp_path)) == {}
  assert 'summary.json is unreadable' in caplog.text
  key = run_records.evaluation_key('knn', 'digits', str(tmp_path), 4)
  merged = run_records.record_evaluation(str(tmp_path), key, {'mode': 'knn', 'pretrained': {}})
  (kept,) = tmp_path.glob('summary.json.corrupt-*')
  assert kept.read_text() == damage
  assert f'kept the unreadable {tmp_path / "summary.json"} as {kept}' in caplog.text
  assert json.loads((tmp_path / 'summary.json').read_text()) == merged
  run_records.record_evaluation(str(tmp_path), key, {'mode': 'knn', 'pretrained': {}})
  assert len(list(tmp_path.glob('summary.json.corrupt-*'))) == 1  # a readable one is replaced


def test_evaluation_metrics_go_to_metrics_jsonl_once_per_key(tmp_path):
  workdir = str(tmp_path)
  (tmp_path / 'metrics.jsonl').write_text(json.dumps({'step': 4, 'loss': 1.0}) + '\n')
  for value in (0.5, 0.7):  # the same evaluation run twice: its record is replaced
    run_records.log_evaluation(workdir, 'knn | digits | run | step 4', 4,
                               {'pretrained': {'knn/k20': value}})
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert records[0] == {'step': 4, 'loss': 1.0}
  assert len(records) == 2 and records[1]['eval/pretrained/knn/k20'] == 0.7
  history = (tmp_path / 'evaluations.jsonl').read_text().splitlines()
  assert [json.loads(line)['pretrained']['knn/k20'] for line in history] == [0.5, 0.7]


def test_a_hand_edited_config_json_is_kept_aside_and_restored_on_resume(tmp_path, caplog):
  from glf_jax.train.pretrain import pretrain  # pylint: disable=g-import-not-at-top
  config = _digits_config(num_steps=4)
  pretrain(config, str(tmp_path))
  original = (tmp_path / 'config.json').read_text()
  edited = json.loads(original)
  edited['optim']['base_learning_rate'] = 123.0
  (tmp_path / 'config.json').write_text(json.dumps(edited))
  again = pretrain(config, str(tmp_path))  # finished: nothing to train, but the file is checked
  assert int(again.state['step']) == 4
  assert (tmp_path / 'config.json').read_text() == original
  (kept,) = tmp_path.glob('config.json.edited-*')
  assert json.loads(kept.read_text())['optim']['base_learning_rate'] == 123.0
  assert f'kept it as {kept} and restored the original' in caplog.text
  caplog.clear()
  pretrain(config, str(tmp_path))  # an intact config.json: nothing to say
  assert 'config.json' not in caplog.text and len(list(tmp_path.glob('config.json.*'))) == 1


@pytest.mark.slow  # 10-25 s (runs, subprocesses): in CI, not in the fast tier
def test_an_allowed_config_change_keeps_the_original_config_json(tmp_path):
  # 4 then 6 steps at learning rate 0.5: the two train steps of test_train_loop's
  # test_changed_config_is_refused_on_resume_unless_allowed (compiled once a session).
  config = _digits_config(num_steps=4)
  main.run(config, str(tmp_path))
  original = (tmp_path / 'config.json').read_text()
  changed = _digits_config(num_steps=6)
  changed.optim.base_learning_rate = 0.5
  changed.allow_config_change = True
  main.run(changed, str(tmp_path))
  assert (tmp_path / 'config.json').read_text() == original
  (change,) = [json.loads(line) for line in
               (tmp_path / 'config_changes.jsonl').read_text().splitlines()]
  assert change['step'] == 4
  assert change['changes']['optim.base_learning_rate'][1] == 0.5
  assert change['changes']['train.num_steps'] == [4, 6]


@pytest.mark.slow  # 10-25 s (runs, subprocesses): in CI, not in the fast tier
def test_reevaluating_and_an_eval_mode_keep_the_pretraining_record(tmp_path, capsys):
  config = _digits_config(num_steps=4, eval_after=True)
  config.eval.compare_random_init = False
  config.eval.compare_raw_pixels = False  # one column in the t-SNE picture
  first = main.run(config, str(tmp_path))
  assert first['train_seconds'] > 0.1 and first['images_per_second'] > 0
  assert 'drawing embedding.png (t-SNE of 90 test images, 1 column)' in capsys.readouterr().out
  for picture in ('curves.png', 'embedding.png'):  # drawn at the end of the run
    with Image.open(tmp_path / picture) as image:
      assert image.format == 'PNG' and min(image.size) > 100
  # Re-running the finished run says so and changes nothing: no second evaluation.
  again = main.run(config, str(tmp_path))
  assert f'{tmp_path} holds a finished run (step 4, evaluated): nothing to do' in (
      capsys.readouterr().out)
  assert again == json.loads((tmp_path / 'summary.json').read_text())
  assert len((tmp_path / 'evaluations.jsonl').read_text().splitlines()) == 1
  # A run stopped while it evaluated (its summary not finished) is evaluated again; the training
  # record stays the original one.
  summary = json.loads((tmp_path / 'summary.json').read_text())
  (tmp_path / 'summary.json').write_text(json.dumps({**summary, 'status': 'interrupted'}))
  again = main.run(config, str(tmp_path))
  assert len((tmp_path / 'evaluations.jsonl').read_text().splitlines()) == 2
  assert again['status'] == 'finished'
  assert again['train_seconds'] == pytest.approx(first['train_seconds'])
  assert again['images_per_second'] == pytest.approx(first['images_per_second'])
  assert again['pretrained'] == first['pretrained']
  # kNN in the run's own workdir adds an evaluation; the pretraining summary stays whole.
  knn = _digits_config()
  knn.mode = 'knn'
  merged = main.run(knn, str(tmp_path))
  assert merged['mode'] == 'pretrain' and merged['pretrained'] == first['pretrained']
  assert merged['train_seconds'] == pytest.approx(first['train_seconds'])
  knn_keys = [k for k in merged['evaluations'] if k.startswith('knn |')]
  assert len(knn_keys) == 1
  assert merged['evaluations'][knn_keys[0]]['pretrained']['knn/k20'] == pytest.approx(
      first['pretrained']['knn/k20'])
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  training_steps = [r['step'] for r in records if 'evaluation' not in r]
  assert len(training_steps) == len(set(training_steps))
  assert sum('evaluation' in r for r in records) == 2  # pretraining's (replaced) and knn's


# --- the feature cache follows the data's content -------------------------------------------------

def _write_folder(root, value_of, splits=(('train', 12), ('test', 6))):
  for split, count in splits:
    for c in range(2):
      folder = root / split / f'class{c}'
      folder.mkdir(parents=True, exist_ok=True)
      for i in range(count):
        pixels = np.full((16, 16, 3), value_of(c, i), np.uint8)
        pixels[: 4 + 2 * c] = 255 - value_of(c, i)
        Image.fromarray(pixels).save(folder / f'{i}.png')


@pytest.mark.slow  # subprocesses or a trained run (5-10 s each): in CI, not in the fast tier
def test_changed_images_recompute_cached_features(tmp_path):
  data = tmp_path / 'data'
  _write_folder(data, lambda c, i: 40 + 120 * c + 3 * i)
  run = _digits_config(num_steps=2)
  run.data.name = 'image_folder'
  run.data.root = str(data)
  run.data.image_size = 16
  run.train.batch_size = 8
  main.run(run, str(tmp_path / 'run'))
  knn = _digits_config()
  knn.mode = 'knn'
  knn.eval.checkpoint_dir = str(tmp_path / 'run')
  first = main.run(knn, str(tmp_path / 'eval'))['pretrained']['knn/k20']
  cached = sorted(os.listdir(tmp_path / 'eval' / 'features'))
  # Swap the two classes' test images: same names, new content (and mtime). The new test
  # features are the old ones with their labels flipped, so the right answer is 1 - first.
  time.sleep(1.1)
  _write_folder(data, lambda c, i: 40 + 120 * (1 - c) + 3 * i, splits=(('test', 6),))
  second = main.run(knn, str(tmp_path / 'eval'))['pretrained']['knn/k20']
  assert len(os.listdir(tmp_path / 'eval' / 'features')) > len(cached)  # a new test entry
  assert first != 0.5 and second == pytest.approx(1 - first), (first, second)
