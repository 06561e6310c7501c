"""Run pictures: curves.png from metrics.jsonl, the t-SNE embedding and its npz, redraw."""

import importlib.util
import json
import os
import pathlib

import numpy as np
from PIL import Image
import pytest

from glf_jax.plots import run as plots

ROOT = pathlib.Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _png_size(path):
  """The (width, height) of a valid PNG file; fails the test otherwise."""
  with open(path, 'rb') as f:
    assert f.read(8) == PNG_SIGNATURE, path
  with Image.open(path) as image:
    image.verify()
  with Image.open(path) as image:
    assert image.format == 'PNG'
    width, height = image.size
  assert width > 0 and height > 0
  return width, height


def _write_log(workdir, records):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w', encoding='utf-8') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)


def _full_record(step):
  # The keys a simclr+adc run logs (glf_jax/train/step.py and loop.py).
  return {'step': step, 'loss': 5.0 - step / 100, 'simclr': 5.5 - step / 100, 'adc': -0.5,
          'adc/dcm': 0.001, 'adc/lpm': -5.5, 'simclr/pos_sim': 0.7, 'simclr/neg_sim': 0.4,
          'finite': 1.0, 'grad_norm': 3.0, 'nonfinite_in_a_row': 0.0, 'probe/loss': 2.3,
          'probe/top1': step / 200, 'lr': 1e-3 * (1 - step / 200), 'epoch': step / 10,
          'images_per_second': 350.0, 'wall_time': 1.7e9 + step}


def test_curves_from_a_full_log(tmp_path):
  records = [_full_record(step) for step in range(10, 201, 10)]
  # Series of other scales (the constant adc at -0.5 beside a loss falling from 5) have axes of
  # their own: on one axis they would all look flat.
  assert plots.curve_panels(records) == [
      ('loss', ['loss', 'simclr']),
      ('adc', ['adc']),
      ('adc/dcm', ['adc/dcm']),
      ('adc/lpm', ['adc/lpm']),
      ('simclr/pos_sim', ['simclr/pos_sim']),
      ('simclr/neg_sim', ['simclr/neg_sim']),
      ('online probe top-1', ['probe/top1']),
      ('learning rate', ['lr']),
  ]
  # An evaluation's record (glf_jax.run_records.log_evaluation) is not a training curve.
  _write_log(tmp_path, [*records, {'step': 200, 'evaluation': 'pretrain@200',
                                   'eval/pretrained/knn/k20': 0.9, 'wall_time': 1.8e9}])
  path = plots.draw_curves(str(tmp_path))
  assert path == str(tmp_path / 'curves.png')
  assert _png_size(path) == (1350, 960)  # 8 panels: 3 columns x 3 rows at 450 x 320 px
  assert not [p for p in os.listdir(tmp_path) if p.endswith('.tmp')]  # atomic write cleaned up


def test_terms_of_other_scales_get_their_own_axes_and_legends_stay_off_the_curves(tmp_path):
  # ADC's statistics: prior entropy ~6.2, LPM ~-5.5, DCM ~0.01 (one linear axis: three flat
  # lines); two similarities of one scale share theirs.
  records = [{'step': s, 'loss': 5 - s / 50, 'adc/prior_entropy': 6.2 + s / 1000,
              'adc/lpm': -5.5 + s / 500, 'adc/dcm': 0.01 + s / 10000,
              'simclr/pos_sim': 0.5 + s / 400, 'simclr/neg_sim': 0.3 - s / 400}
             for s in range(1, 101, 5)]
  assert plots.curve_panels(records) == [
      ('loss', ['loss']), ('adc/prior_entropy', ['adc/prior_entropy']), ('adc/lpm', ['adc/lpm']),
      ('adc/dcm', ['adc/dcm']),
      ('simclr: pos_sim, neg_sim', ['simclr/pos_sim', 'simclr/neg_sim'])]
  figure = plots.curves_figure(records, 'run: simclr+adc on cifar10, 96 steps')
  figure.canvas.draw()
  assert figure.get_suptitle() == 'run: simclr+adc on cifar10, 96 steps'
  (ax,) = [a for a in figure.axes if a.get_legend() is not None]
  legend, plot_area = ax.get_legend().get_window_extent(), ax.get_window_extent()
  assert legend.y1 <= plot_area.y0  # below the axes, not over the curves
  # The title of curves.png names the run, its objective and data (config.json's).
  workdir = tmp_path / 'my_run'
  _write_log(workdir, records)
  (workdir / 'config.json').write_text(json.dumps(
      {'objective': {'name': 'simclr+adc'}, 'data': {'name': 'image_folder',
                                                     'root': '/data/flowers/'}}))
  assert plots._run_title(str(workdir), records) == (  # pylint: disable=protected-access
      'my_run: simclr+adc on flowers, 96 steps')


def test_curves_skip_missing_keys_and_nonfinite_values(tmp_path):
  # No probe, no learning rate, no term statistics; a NaN loss and a record without a step.
  records = [{'step': 1, 'loss': 2.0, 'nt_xent': 2.0}, {'step': 2, 'loss': float('nan')},
             {'loss': 9.0}, {'step': 3, 'loss': 1.5, 'nt_xent': 1.5, 'epoch': 1.0}]
  assert plots.curve_panels(records) == [('loss', ['loss', 'nt_xent'])]
  steps, values = plots._series(records, 'loss')  # pylint: disable=protected-access
  np.testing.assert_array_equal(steps, [1, 3])
  np.testing.assert_array_equal(values, [2.0, 1.5])
  # A key only the later records have, and the learning rate under its other name.
  late = [{'step': 1, 'loss': 1.0}, {'step': 2, 'loss': 0.9, 'learning_rate': 0.1}]
  assert plots.curve_panels(late) == [('loss', ['loss']), ('learning rate', ['learning_rate'])]
  _write_log(tmp_path, records)
  assert _png_size(plots.draw_curves(str(tmp_path))) == (450, 320)  # one panel


def test_curves_from_a_single_record(tmp_path):
  _write_log(tmp_path, [_full_record(10)])
  assert _png_size(plots.draw_curves(str(tmp_path))) == (1350, 960)
  # One panel without a legend: its only blue (matplotlib's first colour) is the point itself.
  _write_log(tmp_path, [{'step': 10, 'probe/top1': 0.5}])
  with Image.open(plots.draw_curves(str(tmp_path))) as image:
    pixels = np.asarray(image.convert('RGB')).reshape(-1, 3).astype(int)
  assert np.sum(np.abs(pixels - [31, 119, 180]).sum(-1) < 30) > 20


def test_curves_of_an_empty_or_missing_log_are_none(tmp_path):
  assert plots.draw_curves(str(tmp_path)) is None       # no metrics.jsonl
  _write_log(tmp_path, [])
  assert plots.draw_curves(str(tmp_path)) is None       # empty
  _write_log(tmp_path, [{'step': 5, 'epoch': 1.0, 'wall_time': 3.0}])
  assert plots.draw_curves(str(tmp_path)) is None       # nothing plottable
  assert not (tmp_path / 'curves.png').exists()


def test_subsample_is_stratified_unique_and_deterministic():
  labels = np.repeat([0, 1, 2], [600, 300, 100])
  np.random.default_rng(1).shuffle(labels)
  index = plots.subsample(labels, 200, seed=3)
  assert len(index) == 200 and len(np.unique(index)) == 200
  assert np.all(np.diff(index) > 0)
  np.testing.assert_allclose(np.bincount(labels[index]), [120, 60, 20], atol=1)
  np.testing.assert_array_equal(index, plots.subsample(labels, 200, seed=3))
  assert not np.array_equal(index, plots.subsample(labels, 200, seed=4))
  np.testing.assert_array_equal(plots.subsample(labels[:50], 200), np.arange(50))


def _blobs(n_per_class=100, dim=32, seed=0):
  """Three Gaussian blobs 20 standard deviations apart."""
  rng = np.random.default_rng(seed)
  centers = np.eye(3, dim) * 20.0
  labels = np.repeat(np.arange(3), n_per_class)
  return (centers[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def _nearest_centroid_accuracy(coords, labels):
  centroids = np.stack([coords[labels == c].mean(0) for c in np.unique(labels)])
  distances = np.linalg.norm(coords[:, None] - centroids[None], axis=-1)
  return float(np.mean(np.argmin(distances, axis=1) == labels))


@pytest.fixture(scope='module')
def embedded(tmp_path_factory):
  """A workdir with save_embedding's output for the blobs and for the blobs with shuffled labels
  (the second column shows the accuracy check can fail)."""
  workdir = tmp_path_factory.mktemp('embedding')
  features, labels = _blobs()
  shuffled = np.random.default_rng(0).permutation(labels)
  columns = {'random init': (features, shuffled), 'pré"trained': (features, labels)}
  path = plots.save_embedding(str(workdir), columns, seed=0)
  return workdir, path, columns


def test_save_embedding_writes_npz_and_png(embedded):
  workdir, path, _ = embedded
  assert path == str(workdir / 'embedding.png')
  width, height = _png_size(path)
  assert width > height  # two panels side by side
  with np.load(workdir / 'embedding.npz', allow_pickle=False) as data:
    assert all(data[key].dtype != object for key in data.files)
    assert json.loads(str(data['columns'])) == ['random init', 'pré"trained']
    assert data['coords_0'].shape == (300, 2) and data['coords_0'].dtype == np.float32
    assert data['labels_1'].shape == (300,)


def test_embedding_separates_clusters(embedded):
  workdir, _, _ = embedded
  columns = plots.load_embedding(str(workdir))
  assert list(columns) == ['random init', 'pré"trained']
  assert _nearest_centroid_accuracy(*columns['pré"trained']) > 0.9
  # The same points coloured by shuffled labels: the check is near chance (1/3) there.
  assert _nearest_centroid_accuracy(*columns['random init']) < 0.6


def test_embedding_is_deterministic_for_a_seed(embedded, tmp_path):
  workdir, _, columns = embedded
  first = plots.load_embedding(str(workdir))['pré"trained'][0]
  plots.save_embedding(str(tmp_path), {'pretrained': columns['pré"trained']}, seed=0)
  np.testing.assert_array_equal(plots.load_embedding(str(tmp_path))['pretrained'][0], first)
  np.testing.assert_array_equal(plots.embed_2d(columns['pré"trained'][0][:60], seed=1),
                                plots.embed_2d(columns['pré"trained'][0][:60], seed=1))


def test_embedding_legend_names_the_classes(tmp_path):
  features, labels = _blobs(n_per_class=10, dim=4)
  plots.save_embedding(str(tmp_path), {'x': (features, labels)},
                       class_names=('airplane', 'bird', 'cat'))
  assert plots.load_class_names(str(tmp_path)) == ['airplane', 'bird', 'cat']
  columns = plots.load_embedding(str(tmp_path))

  def legend(names):
    (figure_legend,) = plots.embedding_figure(columns, names).legends
    return [text.get_text() for text in figure_legend.get_texts()]
  assert legend(plots.load_class_names(str(tmp_path))) == ['airplane', 'bird', 'cat']
  assert legend(None) == ['0', '1', '2']  # no names (an older embedding.npz): the labels


def test_save_embedding_subsamples_and_checks_inputs(tmp_path):
  features, labels = _blobs(n_per_class=40, dim=64)  # 64 > PCA_DIMS: the PCA path
  plots.save_embedding(str(tmp_path), {'x': (features, labels)}, max_points=60)
  with np.load(tmp_path / 'embedding.npz', allow_pickle=False) as data:
    np.testing.assert_array_equal(data['labels_0'], labels[data['index_0']])
    assert data['coords_0'].shape == (60, 2)
    np.testing.assert_array_equal(np.bincount(data['labels_0']), [20, 20, 20])
  with pytest.raises(ValueError, match='2 feature rows but 3 labels'):
    plots.save_embedding(str(tmp_path), {'x': (features[:2], labels[:3])})
  with pytest.raises(ValueError, match='NaN'):
    plots.embed_2d(np.full((10, 4), np.nan))
  with pytest.raises(ValueError, match='at least one column'):
    plots.save_embedding(str(tmp_path), {})


def test_redraw_rebuilds_pictures_from_files_alone(embedded, tmp_path, monkeypatch):
  workdir, _, _ = embedded
  for name in ('embedding.npz',):
    (tmp_path / name).write_bytes((workdir / name).read_bytes())
  _write_log(tmp_path, [_full_record(step) for step in (10, 20, 30)])
  # Redrawing must not run t-SNE again: it reads the stored coordinates.
  monkeypatch.setattr(plots, 'embed_2d', lambda *a, **k: pytest.fail('t-SNE in redraw'))
  written = plots.redraw(str(tmp_path))
  assert written == [str(tmp_path / 'curves.png'), str(tmp_path / 'embedding.png')]
  for path in written:
    os.remove(path)
  assert plots.redraw(str(tmp_path)) == written
  assert _png_size(written[0]) == (1350, 960)  # the same 8 panels as test_curves_from_a_full_log
  assert _png_size(written[1]) == _png_size(workdir / 'embedding.png')
  # Only the log: only the curves.
  os.remove(tmp_path / 'embedding.npz')
  assert plots.redraw(str(tmp_path)) == [str(tmp_path / 'curves.png')]


def test_redraw_of_a_workdir_without_data_fails_clearly(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'nothing to plot in .*metrics\.jsonl.*embedding'):
    plots.redraw(str(tmp_path))
  assert not os.listdir(tmp_path)


def test_plot_config():
  path = ROOT / 'configs' / 'plot.py'
  spec = importlib.util.spec_from_file_location('config_plot', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert 'python -m glf_jax.main --config configs/plot.py' in module.__doc__
  assert module.get_config().mode == 'plot'


def test_study_bars_start_at_zero_and_show_their_values(tmp_path):
  from glf_jax.plots import study as study_plots  # pylint: disable=g-import-not-at-top
  means, stds = [0.5147, 0.5165], [0.0004, 0.0002]
  low, high = study_plots.bar_limits(means, stds)
  assert low == 0.0 and 0.5167 < high < 0.6  # not zoomed to 0.5147-0.5165
  assert study_plots.bar_limits([-2.0, -1.0], [0.0, 0.0]) == (-2.16, 0.0)
  assert study_plots.bar_limits([0.0], [0.0]) == (0.0, 1.0)
  data = {'title': 'linear/top1', 'metric': 'linear/top1', 'names': ['a', 'b'], 'means': means,
          'stds': stds, 'paper': []}
  path = study_plots.draw('bar', data, str(tmp_path / 'bar.png'))
  assert _png_size(path) == (640, 440)
