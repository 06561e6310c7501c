"""The tables of a document (``studies/RESULTS.md``, the README) made from committed study cells.

    python -m glf_jax.study.tables studies/RESULTS.md README.md

A document marks each table it takes from a study with a block::

    <!-- begin generated: claims configs/studies/adc_ablation.py:midi studies/results/adc_ablation_midi -->
    ...
    <!-- end generated -->

``claims`` (the study's comparisons: the paper's number, ours, the detectable difference, the
verdict by the rule of ``glf_jax.study.stats``) or ``cells`` (every cell's metrics, mean ± std
and n, beside the random initialisation and the raw pixels where the cells measured them); then
the study's config file and its results folder, whose ``cells/`` holds the records. The command
re-aggregates each study from its records alone (``results.md``, ``results.csv``,
``results.json`` and the figures in that folder) and rewrites every block. The tests run the same
and require the committed documents to be what it writes: every number in them comes from the
committed cells.
"""

from __future__ import annotations

import math
import os
import re
import sys
from typing import Any

from glf_jax import config as config_lib
from glf_jax.study import aggregate as aggregate_lib

BLOCK = re.compile(r'(?P<begin><!-- begin generated: (?P<kind>claims|cells) (?P<config>\S+) '
                   r'(?P<folder>\S+) -->\n)(?P<body>.*?)(?P<end><!-- end generated -->)', re.S)
DASH = '—'


def _number(value: float, signed: bool = False) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return DASH
  return f'{value:+.4f}' if signed else f'{value:.4f}'


def claims_table(results: dict[str, Any]) -> str:
  """One row per comparison: claim, paper, ours (mean d ± sd over n seeds, 95 % CI), p (Holm
  within the family), the detectable difference, the verdict."""
  lines = ['| claim | comparison | paper | ours: mean d ± sd (n) | 95 % CI | p | detectable '
           '| verdict |', '|---|---|---|---|---|---|---|---|']
  for c in results['comparisons']:
    p = DASH if math.isnan(c['p']) else f'{c["p"]:.3f}'
    if c.get('family') and not math.isnan(c['p']) and c['p_adjusted'] != c['p']:
      p += f' (Holm {c["p_adjusted"]:.3f})'
    metric = (c['metric'] if c['reference_metric'] == c['metric']
              else f'{c["metric"]} − {c["reference_metric"]}')
    lines.append(
        f'| {c.get("claim") or DASH} | `{c["name"]}`, {metric} | {c.get("paper") or DASH} | '
        f'{_number(c["mean"], True)} ± {_number(c["std"])} ({c["n"]}) | '
        f'[{_number(c["ci_low"], True)}, {_number(c["ci_high"], True)}] | {p} | '
        f'{_number(c["mde"])} | **{c["verdict"]}** |')
  return '\n'.join(lines) + '\n'


def cells_table(results: dict[str, Any], metrics: list[str]) -> str:
  """Every cell's ``metrics`` (mean ± std, n) beside its baselines where measured, and its mean
  training time."""
  cells = results['cells']
  baselines = results.get('baselines', {})
  seconds = results.get('train_seconds', {})
  header = ['cell'] + metrics + ['n', 'train s']
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for name, stats in cells.items():
    row = [f'`{name}`']
    for m in metrics:
      s = stats[m]
      text = DASH if not s['n'] else (f'{s["mean"]:.4f} ± '
                                      f'{DASH if s["std"] is None else format(s["std"], ".4f")}')
      extra = [f'{label} {b[m]["mean"]:.4f}' for label, b in
               (('init', baselines.get(name, {}).get('random_init', {})),
                ('pixels', baselines.get(name, {}).get('raw_pixels', {}))) if m in b]
      row.append(text + (f' ({", ".join(extra)})' if extra else ''))
    row.append(str(max(s['n'] for s in stats.values())))
    row.append(f'{seconds[name]:.0f}' if name in seconds else DASH)
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines) + '\n'


def regenerate_study(config_spec: str, folder: str) -> dict[str, Any]:
  """Re-aggregates the study of ``config_spec`` from the records in ``folder/cells`` into
  ``folder``; returns its ``results.json`` content (and the config's metrics)."""
  config = config_lib.load_config_file(config_spec)
  with config.unlocked():
    config.study.cells_dir = os.path.join(folder, 'cells')
    config.study.aggregate_only = True
    config.study.compare_to = config.study.get('compare_to')
  result = aggregate_lib.aggregate(config, folder, command=f'python -m glf_jax.study.tables '
                                   f'(from the records in {folder}/cells)')
  return {**result['report'], 'metrics': list(config.study.metrics)}


def rewrite(text: str, cache: dict | None = None) -> str:
  """``text`` with every generated block rewritten from its study's records."""
  cache = {} if cache is None else cache

  def block(match):
    key = (match['config'], match['folder'])
    if key not in cache:
      cache[key] = regenerate_study(*key)
    results = cache[key]
    body = (claims_table(results) if match['kind'] == 'claims'
            else cells_table(results, results['metrics']))
    return match['begin'] + body + match['end']
  return BLOCK.sub(block, text)


def main(argv=None) -> int:
  paths = (argv if argv is not None else sys.argv[1:]) or ['studies/RESULTS.md']
  cache: dict = {}
  for path in paths:
    with open(path, encoding='utf-8') as f:
      text = f.read()
    new = rewrite(text, cache)
    if new != text:
      with open(path, 'w', encoding='utf-8') as f:
        f.write(new)
    print(f'{path}: {len(BLOCK.findall(text))} generated tables'
          + (' rewritten' if new != text else ' (unchanged)'), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
