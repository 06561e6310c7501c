"""The generated tables of the documents: python -m glf_jax.study.tables rewrites them from the
committed study records, and the committed documents are exactly what it writes."""

import json
import pathlib
import re
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


@pytest.fixture(scope='module')
def regenerated(tmp_path_factory):
  """Every study the documents show, re-aggregated from its committed records in a copy of its
  folder: ``(copy's root, {document: the document with its blocks rewritten})``."""
  root = tmp_path_factory.mktemp('regenerated')
  texts = {doc: (ROOT / doc).read_text(encoding='utf-8') for doc in DOCUMENTS}
  assert list(tables.BLOCK.finditer(texts['studies/RESULTS.md'])), (
      'studies/RESULTS.md has no generated table')
  for text in texts.values():
    for match in tables.BLOCK.finditer(text):
      source, copy = ROOT / match['folder'], root / match['folder']
      if copy.exists():
        continue
      if (source / 'cells').is_dir():
        shutil.copytree(source / 'cells', copy / 'cells')
      else:  # a study none of whose runs has been recorded yet: its tables say "not run"
        copy.mkdir(parents=True)
  cache = {}
  with pytest.MonkeyPatch.context() as patch:
    patch.chdir(root)  # the blocks' folders are relative: regenerate in the copy
    rewritten = {doc: tables.rewrite(text, cache) for doc, text in texts.items()}
  return root, rewritten


@pytest.mark.slow  # aggregates every committed study (seconds each)
def test_committed_documents_are_what_the_tables_command_writes(regenerated):
  """Every generated number of the documents comes from the committed records: regenerated in a
  copy, each document is unchanged."""
  _, rewritten = regenerated
  for doc in DOCUMENTS:
    committed = [m.group(0) for m in tables.BLOCK.finditer((ROOT / doc).read_text('utf-8'))]
    assert [m.group(0) for m in tables.BLOCK.finditer(rewritten[doc])] == committed, doc


def _study_outputs(root: pathlib.Path) -> str:
  """The regenerated ``results.md`` of every study under ``root``."""
  return '\n'.join(p.read_text(encoding='utf-8')
                   for p in sorted(root.glob('studies/results/*/results.md')))


@pytest.mark.slow
def test_committed_study_reports_are_what_the_tables_command_writes(regenerated):
  """Each study's committed ``results.md`` is its regenerated one (but for the line naming the
  folder it was written in)."""
  root, _ = regenerated
  reports = sorted(root.glob('studies/results/*/results.md'))
  assert reports
  drop = lambda text: [l for l in text.splitlines() if not l.startswith('Workdir:')]
  for report in reports:
    committed = ROOT / report.relative_to(root)
    assert drop(report.read_text('utf-8')) == drop(committed.read_text('utf-8')), committed


_PAIR = re.compile(r'(\d+\.\d{2,4}) ± (\d+\.\d{2,4})( points)?')
_FOUR_DECIMALS = re.compile(r'(?<![\d.])\d\.\d{4}(?!\d)')


def _unsourced(prose: str, outputs: str, values: set[str]) -> list[str]:
  """The figures of ``prose`` found neither in ``outputs`` nor among ``values``: each
  "mean ± sd" of four decimals (or of two, in points) as that pair, each other four-decimal
  number by itself."""
  pairs = {(a, b) for a, b, _ in _PAIR.findall(outputs)}
  numbers = set(_FOUR_DECIMALS.findall(outputs)) | values
  missing = []
  for a, b, points in _PAIR.findall(prose):
    if points:
      a, b = f'{float(a) / 100:.4f}', f'{float(b) / 100:.4f}'
    if len(a) == len(b) == 6 and (a, b) not in pairs:
      missing.append(f'{a} ± {b}')
  missing += [n for n in _FOUR_DECIMALS.findall(_PAIR.sub('', prose)) if n not in numbers]
  return missing


def test_the_figure_check_finds_an_unsourced_figure():
  outputs = '| `a - b` | +0.0215 ± 0.0085 | +0.0122, +0.0235, +0.0289 |'
  assert _unsourced('gain +0.0215 ± 0.0085 (+0.0122, +0.0235, +0.0289); +2.15 ± 0.85 points',
                    outputs, set()) == []
  assert _unsourced('gain +0.0215 ± 0.0086', outputs, set()) == ['0.0215 ± 0.0086']
  assert _unsourced('+2.15 ± 0.86 points', outputs, set()) == ['0.0215 ± 0.0086']
  assert _unsourced('seeds +0.0122, +0.0236', outputs, set()) == ['0.0236']
  assert _unsourced('top-5 0.9188', outputs, {'0.9188'}) == []


@pytest.mark.slow
def test_every_figure_of_the_prose_is_in_a_regenerated_report_or_a_record(regenerated):
  """The numbers the documents' prose quotes (means ± stds, paired differences, per-seed values)
  are in the study reports regenerated from the committed records, or a record's metric (to four
  decimals): none is typed from elsewhere."""
  root, rewritten = regenerated
  outputs = _study_outputs(root) + ''.join(
      m.group(0) for text in rewritten.values() for m in tables.BLOCK.finditer(text))
  values = set()
  for record in root.glob('studies/results/*/cells/*/*.json'):
    for value in json.loads(record.read_text('utf-8')).get('metrics', {}).values():
      if isinstance(value, float):
        values.add(f'{abs(value):.4f}')
  for doc, prose in _study_prose().items():
    assert _unsourced(prose, outputs, values) == [], doc


def _study_prose() -> dict[str, str]:
  """The prose that reports studies, without its generated blocks: all of RESULTS.md, and the
  README's sections "Studies" and "Known gaps" (its other numbers are single runs' printed
  tables and benchmarks, each with the command that made it)."""
  out = {'studies/RESULTS.md': (ROOT / 'studies/RESULTS.md').read_text('utf-8')}
  sections = re.split(r'^(?=## )', (ROOT / 'README.md').read_text('utf-8'), flags=re.M)
  chosen = [s for s in sections if s.startswith(('## Studies', '## Known gaps'))]
  assert len(chosen) == 2, 'README: the sections "## Studies..." and "## Known gaps" moved'
  out['README.md'] = '\n'.join(chosen)
  return {doc: tables.BLOCK.sub('', text) for doc, text in out.items()}
