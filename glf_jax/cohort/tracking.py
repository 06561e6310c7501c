"""Tracking a cohort: representation and weight alignment between its members."""

from __future__ import annotations

import functools
import itertools
import time
from typing import Any, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from glf_jax import metrics as metrics_lib
from glf_jax.cohort.config import WEIGHT_GAP_LAYERS
from glf_jax.cohort.members import Member, flat_leaves, top_part
from glf_jax.data import augment, make_source
from glf_jax.evaluate.knn import knn_accuracy


def _rows(source, n: int) -> np.ndarray:
  return np.unique(np.linspace(0, len(source) - 1, min(n, len(source))).astype(np.int64))


def _load(source, rows) -> tuple[np.ndarray, np.ndarray]:
  items = [source[int(i)] for i in rows]
  return (np.stack([np.asarray(r['image']) for r in items]),
          np.asarray([int(r['label']) for r in items], np.int32))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _encode(eval_graphdef, transform, params, batch_stats, images):
  size, mean, std, crop = transform
  x = augment.eval_transform(images, size=size, mean=mean, std=std, crop_fraction=crop)
  out = nnx.merge(eval_graphdef, params, batch_stats)(x)
  return out['h'].astype(jnp.float32), out['z'].astype(jnp.float32)


def encode(eval_graphdef, transform, params, batch_stats, images, batch_size: int):
  """``(h, z)`` float32 NumPy of ``images`` in eval mode, ``batch_size`` rows per call (the last
  call padded, so each member compiles once)."""
  hs, zs = [], []
  n = len(images)
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    real = len(chunk)
    if real < batch_size and n > batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - real, axis=0)])
    h, z = _encode(eval_graphdef, transform, params, batch_stats, chunk)
    hs.append(np.asarray(h)[:real])
    zs.append(np.asarray(z)[:real])
  return np.concatenate(hs), np.concatenate(zs)


def layer_gaps(params_a, params_b, layers: str = 'backbone') -> list[float]:
  """The per-layer relative gaps ``|Wa - Wb|_F / (½(|Wa|_F + |Wb|_F))`` of the backbone's conv
  kernels (``'backbone'``), plus BatchNorm's scale γ (``'backbone_bn'``), each computed by
  ``glf_jax.metrics.weight_gap`` on that one layer."""
  if layers not in WEIGHT_GAP_LAYERS:
    raise ValueError(f'layers must be one of {WEIGHT_GAP_LAYERS}, got {layers!r}')
  flat_b = flat_leaves(params_b)
  gaps = []
  for path, a in jax.tree_util.tree_flatten_with_path(params_a)[0]:
    if top_part(path) != 'backbone':
      continue
    is_scale = any(getattr(k, 'key', None) == 'scale' for k in path)
    if np.ndim(a) >= 2 or (layers == 'backbone_bn' and is_scale):
      gaps.append(metrics_lib.weight_gap([a], [flat_b[jax.tree_util.keystr(path)]], min_ndim=0))
  return gaps


class Tracker:
  """The fixed probe set and kNN bank, and what one tracked step computes."""

  def __init__(self, config, members: Sequence[Member]):
    c = config.cohort
    e = config.eval
    self.members = members
    self.layers = c.weight_gap_layers
    self.batch_size = int(e.batch_size)
    probe_source = make_source(config.data, c.probe_split or e.test_split)
    bank_source = make_source(config.data, e.train_split)
    self.probe_x, self.probe_y = _load(probe_source, _rows(probe_source, c.probe_examples))
    self.bank_x, self.bank_y = _load(bank_source, _rows(bank_source, c.knn_examples))
    self.num_classes = int(bank_source.num_classes)
    self.k = min(int(c.knn_k), len(self.bank_y))
    self.rsa_n = min(int(c.rsa_examples), len(self.probe_y))
    t = config.eval.transform
    self.transform = (int(t.image_size), tuple(float(m) for m in t.mean),
                      tuple(float(s) for s in t.std), float(t.crop_fraction))
    self.has_projector = {m.name: bool(m.config.model.projector_layers) for m in members}

  def __call__(self, state: dict, step: int) -> dict[str, Any]:
    record: dict[str, Any] = {'step': int(step)}
    feats = {}
    for m in self.members:
      s = state['members'][m.name]
      g = m.training.eval_graphdef
      h, z = encode(g, self.transform, s['params'], s['batch_stats'], self.probe_x,
                    self.batch_size)
      bank_h, _ = encode(g, self.transform, s['params'], s['batch_stats'], self.bank_x,
                         self.batch_size)
      feats[m.name] = (h, z)
      record[f'member/{m.name}/knn_top1'] = knn_accuracy(
          bank_h, self.bank_y, h, self.probe_y, k=self.k, num_classes=self.num_classes)
    for a, b in itertools.combinations([m.name for m in self.members], 2):
      key = f'pair/{a}-{b}'
      kinds = [('h', 0)] + ([('z', 1)] if self.has_projector[a] and self.has_projector[b] else [])
      for kind, i in kinds:
        x, y = feats[a][i], feats[b][i]
        record[f'{key}/cka_{kind}'] = metrics_lib.linear_cka(x, y)
        for method in ('pearson', 'spearman'):
          record[f'{key}/rsa_{kind}_{method}'] = metrics_lib.rsa(
              x[:self.rsa_n], y[:self.rsa_n], method=method)
      gaps = layer_gaps(state['members'][a]['params'], state['members'][b]['params'],
                        self.layers)
      record[f'{key}/weight_gap_sum'] = float(np.sum(gaps))
      record[f'{key}/weight_gap_mean'] = float(np.mean(gaps))
    record['wall_time'] = time.time()
    return record
