"""Pictures of a run: PNG files in its workdir, drawn with matplotlib's Agg canvas (headless).

``curves.png``: the loss and its terms, the online probe accuracy and the learning rate against
the step, from ``metrics.jsonl``. ``embedding.png``: a t-SNE map of test-set features coloured by
class, one panel per column (e.g. ``'random init'`` and ``'pretrained'``); its coordinates are kept
in ``embedding.npz`` so that ``redraw(workdir)`` (``--config.mode=plot``) needs neither the model
nor another t-SNE.

    save_embedding(workdir, {'random init': (h0, y), 'pretrained': (h, y)})
    redraw(workdir)  # -> ['<workdir>/curves.png', '<workdir>/embedding.png']
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

from glf_jax.data import sources
from glf_jax.plots.common import save_png
from glf_jax.run import layout
from glf_jax.run import metrics_log
from glf_jax.runtime import fileio

METRICS_FILE = layout.METRICS_LOG
CURVES_FILE = layout.CURVES
EMBEDDING_DATA = layout.EMBEDDING_DATA
EMBEDDING_FILE = layout.EMBEDDING

MAX_POINTS = 2000
# 500 iterations (250 of them early exaggeration) in half the time of sklearn's default 1000, with
# the same class separation (digits: 2-D kNN accuracy 0.942 vs 0.947 on 450 images); PCA to 50
# dims first is the usual t-SNE recipe and keeps the neighbour search cheap for wide backbones.
TSNE_ITERATIONS = 500
PCA_DIMS = 50

# Logged scalars that are not loss terms (the train step, the session, methods' after_update, records).
_NOT_LOSS = frozenset({'step', 'loss', 'lr', 'learning_rate', 'epoch', 'images_per_second',
                       'wall_time', 'finite', 'nonfinite_in_a_row', 'grad_norm', 'ema_decay'})
_NOT_LOSS_PREFIXES = ('probe/', 'eval/')
_LR_KEYS = ('lr', 'learning_rate')
_PROBE_KEY = 'probe/top1'


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) where ``key`` is logged with a finite number (NaN steps are left out)."""
  pairs = [(r['step'], r[key]) for r in records
           if 'step' in r and isinstance(r.get(key), (int, float))]
  steps, values = (np.asarray(c, np.float64) for c in zip(*pairs)) if pairs else (
      np.zeros(0), np.zeros(0))
  keep = np.isfinite(values)
  return steps[keep], values[keep]


# Series share an axis only when the axis's range is at most this many times each one's own
# span: prior entropy (~6.2), LPM (~-5.5) and DCM (~0.01) on one axis are three flat lines.
SHARED_AXIS_RATIO = 4.0


def _span(values: np.ndarray) -> float:
  """A series' own vertical extent: its range, at least 5% of its size (a constant, a point)."""
  return max(float(np.ptp(values)), 0.05 * float(np.median(np.abs(values))), 1e-12)


def _shared_axes(records: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[list[str]]:
  """``keys`` in groups that can share an axis (:data:`SHARED_AXIS_RATIO`), in order: each key
  joins the first group whose range with it stays within the ratio of every member's span."""
  values = {key: _series(records, key)[1] for key in keys}
  groups: list[list[str]] = []
  for key in keys:
    for group in groups:
      members = [*group, key]
      joint = np.concatenate([values[k] for k in members])
      if np.ptp(joint) <= SHARED_AXIS_RATIO * min(_span(values[k]) for k in members):
        group.append(key)
        break
    else:
      groups.append([key])
  return groups


def curve_panels(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
  """(title, keys) for each panel that has data: the loss with the terms of its scale, each
  other term, each term's statistics (``<term>/<stat>``; those of one scale together), the probe
  accuracy, the learning rate. Series of different scales never share an axis
  (:func:`_shared_axes`)."""
  keys = list(dict.fromkeys(k for r in records for k in r))
  present = [k for k in keys if len(_series(records, k)[0])]
  losses = [k for k in present
            if k not in _NOT_LOSS and not k.startswith(_NOT_LOSS_PREFIXES)]
  panels = []
  for group in _shared_axes(records, [k for k in ['loss', *losses]
                                      if k in present and '/' not in k]):
    panels.append(('loss' if 'loss' in group else ', '.join(group), group))
  for term in dict.fromkeys(k.split('/')[0] for k in losses if '/' in k):
    for group in _shared_axes(records, [k for k in losses if k.startswith(term + '/')]):
      panels.append((group[0] if len(group) == 1 else
                     f'{term}: {", ".join(k.split("/", 1)[1] for k in group)}', group))
  panels.append(('online probe top-1', [k for k in (_PROBE_KEY,) if k in present]))
  panels.append(('learning rate', [k for k in _LR_KEYS if k in present][:1]))
  return [(title, ks) for title, ks in panels if ks]


def _run_title(workdir: str, records: Sequence[Mapping[str, Any]]) -> str:
  """``<run>: <objective> on <data>, <N> steps`` (what the run's ``config.json`` says)."""
  title = os.path.basename(os.path.normpath(workdir))
  try:
    config = json.loads(fileio.read_text(fileio.join(workdir, layout.CONFIG)))
    title += f': {config["objective"]["name"]} on {sources.data_name(config["data"])}'
  except (OSError, ValueError, KeyError, TypeError):
    pass  # no config.json (e.g. a copied log): the run's name alone
  steps = [r['step'] for r in records if isinstance(r.get('step'), (int, float))]
  return f'{title}, {int(max(steps))} steps' if steps else title


def curves_figure(records: Sequence[Mapping[str, Any]], title: str = '') -> Figure | None:
  """The figure of ``curves.png`` for training ``records`` (None: nothing to plot)."""
  panels = curve_panels(records)
  if not panels:
    return None
  columns = min(3, len(panels))
  rows = math.ceil(len(panels) / columns)
  figure = Figure(figsize=(4.5 * columns, 3.2 * rows), layout='constrained')
  for index, (panel_title, keys) in enumerate(panels):
    ax = figure.add_subplot(rows, columns, index + 1)
    for key in keys:
      steps, values = _series(records, key)
      # A single record is a point; a line through one point is invisible.
      ax.plot(steps, values, label=key, marker='o' if len(steps) == 1 else None)
    ax.set_title(panel_title)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
    if len(keys) > 1:  # below the axes, never over the curves
      ax.legend(fontsize='small', loc='upper center', bbox_to_anchor=(0.5, -0.22),
                ncols=min(3, len(keys)), frameon=False)
  if title:
    figure.suptitle(title)
  return figure


def draw_curves(workdir: str) -> str | None:
  """Draws ``<workdir>/curves.png`` from ``metrics.jsonl``, titled with the run, its objective
  and data; returns its path, or None when the log is missing or has nothing to plot."""
  records = metrics_log.read(fileio.join(workdir, METRICS_FILE))
  # Evaluations append their results as records of their own (glf_jax.run.records); the curves
  # are those of training.
  records = [r for r in records if 'evaluation' not in r]
  figure = curves_figure(records, _run_title(workdir, records))
  if figure is None:
    return None
  return save_png(figure, fileio.join(workdir, CURVES_FILE))


def subsample(labels: np.ndarray, max_points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
  """Sorted indices of at most ``max_points`` examples, each class in proportion to its count.

  The examples are shuffled with ``seed``, grouped by class, and taken evenly spaced along that
  order, so every class keeps its share and the choice depends only on (labels, seed).
  """
  labels = np.asarray(labels)
  n = len(labels)
  if n <= max_points:
    return np.arange(n)
  order = np.random.default_rng(seed).permutation(n)
  order = order[np.argsort(labels[order], kind='stable')]
  # Steps of (n-1)/(m-1) >= 1 between positions: no index is taken twice.
  return np.sort(order[np.linspace(0, n - 1, max_points).astype(np.int64)])


def embed_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
  """t-SNE coordinates ``[n, 2]`` (float32) of ``features [n, d]``; deterministic for a seed."""
  # sklearn is imported here: its import costs a second that only this function needs.
  from sklearn.decomposition import PCA  # pylint: disable=g-import-not-at-top
  from sklearn.manifold import TSNE  # pylint: disable=g-import-not-at-top
  x = np.asarray(features, np.float32).reshape(len(features), -1)
  if len(x) < 2:
    raise ValueError(f'a t-SNE map needs at least 2 examples, got {len(x)}')
  if not np.isfinite(x).all():
    raise ValueError('features contain NaN or infinity (a diverged encoder?)')
  if x.shape[1] > PCA_DIMS and len(x) > PCA_DIMS:
    x = PCA(PCA_DIMS, random_state=seed).fit_transform(x)
  # sklearn requires perplexity < n; 30 (its default) for all but tiny sets.
  perplexity = min(30.0, max(1.0, (len(x) - 1) / 3))
  tsne = TSNE(2, perplexity=perplexity, init='pca', random_state=seed,
              max_iter=TSNE_ITERATIONS)
  return tsne.fit_transform(x).astype(np.float32)


def save_embedding(workdir: str, columns: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   seed: int = 0, max_points: int = MAX_POINTS,
                   class_names: Sequence[str] | None = None) -> str:
  """Computes a t-SNE map per column, stores it in ``embedding.npz`` and draws ``embedding.png``.

  Args:
    workdir: the run's directory.
    columns: name -> (features ``[n, d]``, integer labels ``[n]``), e.g. ``{'random init': ...,
      'pretrained': ...}``; panels appear in this order.
    seed: fixes the subsample and the t-SNE.
    max_points: at most this many examples per column (a stratified subsample).
    class_names: the name of each label (the legend's; None: the labels themselves).

  Returns:
    The path of ``embedding.png``.
  """
  if not columns:
    raise ValueError('save_embedding needs at least one column')
  arrays = {'columns': np.array(json.dumps(list(columns))), 'seed': np.array(seed),
            'class_names': np.array(json.dumps(None if class_names is None
                                               else [str(c) for c in class_names]))}
  for i, (name, (features, labels)) in enumerate(columns.items()):
    labels = np.asarray(labels).astype(np.int64)
    if len(features) != len(labels):
      raise ValueError(f'column {name!r}: {len(features)} feature rows but {len(labels)} labels')
    index = subsample(labels, max_points, seed)
    arrays[f'coords_{i}'] = embed_2d(np.asarray(features)[index], seed)
    arrays[f'labels_{i}'] = labels[index]
    arrays[f'index_{i}'] = index
  with fileio.atomic_write(fileio.join(workdir, EMBEDDING_DATA), 'wb') as f:
    np.savez(f, **arrays)
  return draw_embedding(workdir)


def load_embedding(workdir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """name -> (coordinates ``[m, 2]``, labels ``[m]``) from ``embedding.npz`` (no pickle)."""
  with (fileio.open_file(fileio.join(workdir, EMBEDDING_DATA), 'rb') as f,
        np.load(f, allow_pickle=False) as data):
    names = json.loads(str(data['columns']))
    return {name: (data[f'coords_{i}'], data[f'labels_{i}']) for i, name in enumerate(names)}


def load_class_names(workdir: str) -> list[str] | None:
  """The class names stored in ``embedding.npz`` (None: none stored, e.g. an older file)."""
  with (fileio.open_file(fileio.join(workdir, EMBEDDING_DATA), 'rb') as f,
        np.load(f, allow_pickle=False) as data):
    return json.loads(str(data['class_names'])) if 'class_names' in data.files else None


def _class_colors(num_classes: int):
  name = 'tab10' if num_classes <= 10 else 'tab20' if num_classes <= 20 else 'turbo'
  cmap = matplotlib.colormaps[name]
  if name == 'turbo':
    return [cmap(i / max(num_classes - 1, 1)) for i in range(num_classes)]
  return [cmap(i) for i in range(num_classes)]


def embedding_figure(columns: Mapping[str, tuple[np.ndarray, np.ndarray]],
                     class_names: Sequence[str] | None = None) -> Figure:
  """The figure of ``embedding.png``: a panel per column (coordinates, labels), coloured by
  class, the legend naming the classes (``class_names[label]``; the labels without them)."""
  classes = np.unique(np.concatenate([labels for _, labels in columns.values()]))
  colors = dict(zip(classes.tolist(), _class_colors(len(classes))))
  figure = Figure(figsize=(4.5 * len(columns) + 1.2, 4.5), layout='constrained')
  for index, (name, (coords, labels)) in enumerate(columns.items()):
    ax = figure.add_subplot(1, len(columns), index + 1)
    for c in classes.tolist():
      at = labels == c
      ax.scatter(coords[at, 0], coords[at, 1], s=6, color=colors[c], linewidths=0)
    ax.set_title(f'{name} ({len(labels)} test images)')
    ax.set_xticks([])
    ax.set_yticks([])
  if len(classes) <= 20:  # a legend of more classes hides the map
    handles = [Line2D([], [], marker='o', linestyle='', color=colors[c]) for c in colors]
    names = [class_names[c] if class_names and 0 <= c < len(class_names) else str(c)
             for c in colors]
    figure.legend(handles, names, loc='outside right center', title='class', fontsize='small')
  figure.suptitle('t-SNE of test-set features')
  return figure


def draw_embedding(workdir: str) -> str | None:
  """Draws ``<workdir>/embedding.png`` from ``embedding.npz``; returns its path, or None when
  there is no ``embedding.npz``."""
  if not fileio.exists(fileio.join(workdir, EMBEDDING_DATA)):
    return None
  figure = embedding_figure(load_embedding(workdir), load_class_names(workdir))
  return save_png(figure, fileio.join(workdir, EMBEDDING_FILE))


def redraw(workdir: str) -> list[str]:
  """Redraws every picture the workdir has data for; returns the paths written.

  Raises:
    FileNotFoundError: the workdir has neither ``metrics.jsonl`` nor ``embedding.npz``.
  """
  sources = (METRICS_FILE, EMBEDDING_DATA)
  if not any(fileio.exists(fileio.join(workdir, name)) for name in sources):
    raise FileNotFoundError(f'nothing to plot in {workdir}: no {METRICS_FILE} (written by '
                            f'pretraining) and no {EMBEDDING_DATA} (written by evaluation)')
  return [path for path in (draw_curves(workdir), draw_embedding(workdir)) if path]
