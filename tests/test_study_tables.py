"""The generated tables of the documents: python -m glf_jax.study.tables rewrites them from the
committed study records, and the committed documents are exactly what it writes."""

import pathlib
import shutil

import pytest

from glf_jax.study import tables

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCUMENTS = ('studies/RESULTS.md', 'README.md')

_COMPARISON = {'name': 'adc - baseline', 'claim': 'ADC improves its method', 'paper': '91.80 -> 93.46',
               'metric': 'linear/top1', 'reference_metric': 'linear/top1', 'n': 3,
               'mean': 0.0123, 'std': 0.0031, 'ci_low': 0.0046, 'ci_high': 0.0200, 'p': 0.021,
               'p_adjusted': 0.042, 'family': 'ADC and its parts', 'mde': 0.0102,
               'verdict': 'separated'}
_RESULTS = {'comparisons': [_COMPARISON], 'metrics': ['linear/top1'],
            'cells': {'adc': {'linear/top1': {'mean': 0.61, 'std': 0.01, 'n': 3}}},
            'baselines': {'adc': {'raw_pixels': {'linear/top1': {'mean': 0.35, 'std': 0, 'n': 3}}}},
            'train_seconds': {'adc': 61.4}}


def test_blocks_are_rewritten_from_the_study_and_nothing_else(monkeypatch):
  calls = []

  def regenerate(config_spec, folder):
    calls.append((config_spec, folder))
    return _RESULTS
  monkeypatch.setattr(tables, 'regenerate_study', regenerate)
  text = ('intro\n<!-- begin generated: claims configs/x.py:midi studies/results/x -->\nold\n'
          '<!-- end generated -->\nmiddle 0.999\n<!-- begin generated: cells configs/x.py:midi '
          'studies/results/x -->\n<!-- end generated -->\nend\n')
  new = tables.rewrite(text)
  assert calls == [('configs/x.py:midi', 'studies/results/x')]  # one aggregation per study
  assert 'old' not in new and 'middle 0.999' in new and new.startswith('intro\n')
  assert ('| ADC improves its method | `adc - baseline`, linear/top1 | 91.80 -> 93.46 | '
          '+0.0123 ± 0.0031 (3) | [+0.0046, +0.0200] | 0.021 (Holm 0.042) | 0.0102 | '
          '**separated** |') in new
  assert '| `adc` | 0.6100 ± 0.0100 (pixels 0.3500) | 3 | 61 |' in new
  assert tables.rewrite(new) == new  # idempotent


@pytest.mark.slow  # aggregates every committed study (seconds each)
def test_committed_documents_are_what_the_tables_command_writes(tmp_path, monkeypatch):
  """Every generated number of the documents comes from the committed records: regenerated in a
  copy, each document is unchanged."""
  blocks = {doc: list(tables.BLOCK.finditer((ROOT / doc).read_text(encoding='utf-8')))
            for doc in DOCUMENTS}
  assert blocks['studies/RESULTS.md'], 'studies/RESULTS.md has no generated table'
  for doc, found in blocks.items():
    for match in found:
      source, copy = ROOT / match['folder'], tmp_path / match['folder']
      if copy.exists():
        continue
      if (source / 'cells').is_dir():
        shutil.copytree(source / 'cells', copy / 'cells')
      else:  # a study none of whose runs has been recorded yet: its tables say "not run"
        copy.mkdir(parents=True)
  monkeypatch.chdir(tmp_path)  # the blocks' folders are relative: regenerate in the copy
  for doc in DOCUMENTS:
    text = (ROOT / doc).read_text(encoding='utf-8')
    committed = [m.group(0) for m in tables.BLOCK.finditer(text)]
    rewritten = [m.group(0) for m in tables.BLOCK.finditer(tables.rewrite(text))]
    assert rewritten == committed, doc
