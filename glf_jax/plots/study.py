"""A study's figures, one drawer per figure kind (``study.figures``), from data the study has
already aggregated (``glf_jax.study.aggregate.figure_data``): this module only draws.

``draw(kind, data, path)``: ``data`` holds ``title``, ``metric`` and the kind's own entries:

* ``track``: ``curves`` ``[(label, steps, mean, std)]`` and ``ylabel``: lines with ± std bands;
* ``scatter``: ``groups`` ``{group: [(cell, seed, x, y)]}`` and ``x``: one colour per cell, one
  marker per group;
* ``bar``: ``names``, ``means``, ``stds`` and ``paper`` ``[(index, value)]``;
* ``line``: ``groups`` ``{label: [(x, mean, std)]}``, ``x``, ``series``, ``log_x``;
* ``heatmap``: ``xs``, ``ys``, ``grid`` (means; NaN where no cell), ``x``, ``y``.
"""

from __future__ import annotations

from typing import Any, Callable

from matplotlib.figure import Figure
import numpy as np

from glf_jax.plots.common import save_png


def _track(ax, fig, data):
  del fig
  for label, steps, mean, std in data['curves']:
    line, = ax.plot(steps, mean, marker='.', label=label)
    ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
  ax.set_xlabel('step')
  ax.set_ylabel(data['ylabel'])
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)


def _scatter(ax, fig, data):
  del fig
  markers = 'osD^v<>'
  colours = {}
  groups = data['groups']
  for g, points in enumerate(groups.values()):
    for cell_name, _, x, y in points:
      colour = colours.setdefault(cell_name, f'C{len(colours) % 10}')
      ax.scatter(x, y, color=colour, marker=markers[g % len(markers)], alpha=0.8)
  for cell_name, colour in colours.items():
    ax.scatter([], [], color=colour, label=cell_name)
  if len(groups) > 1:
    for g, group in enumerate(groups):
      ax.scatter([], [], color='grey', marker=markers[g % len(markers)], label=group)
  ax.legend(fontsize=7)
  ax.set_xlabel(data['x'])
  ax.set_ylabel(data['metric'])
  ax.grid(alpha=0.3)


def bar_limits(means, stds, marks=()) -> tuple[float, float]:
  """The y range of a bar chart: from zero (bars are lengths; an axis zoomed to 0.5147-0.5165
  made equal results look far apart) to the highest bar, error bar or mark, with a margin."""
  tops = [m + s for m, s in zip(means, stds)] + [m - s for m, s in zip(means, stds)] + list(marks)
  low, high = min([0.0, *tops]), max([0.0, *tops])
  margin = 0.08 * (high - low) or 1.0  # all zero: a unit axis
  return low - (margin if low < 0 else 0.0), high + (margin if high > 0 or low == 0 else 0.0)


def _bar(ax, fig, data):
  del fig
  means, stds, paper = data['means'], data['stds'], data['paper']
  positions = np.arange(len(data['names']))
  bars = ax.bar(positions, means, yerr=stds, capsize=3, color='tab:blue', label='this study')
  if paper:
    ax.scatter([p[0] for p in paper], [p[1] for p in paper], marker='_', s=400,
               color='tab:red', zorder=3, label='paper')
    ax.legend(loc='upper left', bbox_to_anchor=(1.0, 1.0), fontsize=8)  # off the bars
  ax.set_xticks(positions)
  ax.set_xticklabels(data['names'], rotation=30, ha='right', fontsize=8)
  ax.set_ylim(*bar_limits(means, stds, [p[1] for p in paper]))
  # The values themselves: differences too small to see on an axis from zero are read here.
  ax.bar_label(bars, labels=[f'{m:.4f}' for m in means], fontsize=7, padding=2)
  ax.set_ylabel(data['metric'])


def _line(ax, fig, data):
  del fig
  groups = data['groups']
  for label, points in groups.items():
    ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                marker='o', capsize=3, label=label)
  if data['log_x']:
    ax.set_xscale('log')
    ticks = sorted({p[0] for points in groups.values() for p in points})
    ax.set_xticks(ticks)
    ax.set_xticklabels([f'{t:g}' for t in ticks])
    ax.minorticks_off()
  ax.set_xlabel(data['x'])
  ax.set_ylabel(data['metric'])
  if data['series'] or len(groups) > 1:
    ax.legend(title=data['series'], fontsize=8)


def _heatmap(ax, fig, data):
  grid = data['grid']
  image = ax.imshow(grid, origin='lower', cmap='viridis', aspect='auto')
  fig.colorbar(image, ax=ax, label=data['metric'])
  for (i, j), v in np.ndenumerate(grid):
    if np.isfinite(v):
      ax.text(j, i, f'{v:.3f}', ha='center', va='center', fontsize=8, color='white')
  ax.set_xticks(range(len(data['xs'])))
  ax.set_xticklabels([str(x) for x in data['xs']])
  ax.set_yticks(range(len(data['ys'])))
  ax.set_yticklabels([str(y) for y in data['ys']])
  ax.set_xlabel(data['x'])
  ax.set_ylabel(data['y'])


DRAWERS: dict[str, Callable[[Any, Figure, dict], None]] = {
    'track': _track, 'scatter': _scatter, 'bar': _bar, 'line': _line, 'heatmap': _heatmap}


def draw(kind: str, data: dict, path: str) -> str:
  """Draws one figure of ``kind`` to ``path``; returns ``path``."""
  fig = Figure(figsize=(6.4, 4.4))
  ax = fig.add_subplot(1, 1, 1)
  DRAWERS[kind](ax, fig, data)
  ax.set_title(data['title'], fontsize=data.get('title_size', 10))
  fig.tight_layout()
  return save_png(fig, path)
