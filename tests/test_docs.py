"""The repository stands alone, and its references into docs/maths.md resolve.

A user's clone holds nothing beside the repository: its code, configs, tests, scripts and documents
must not cite files outside it (the mathematics they implement is stated in ``docs/maths.md``).
Every ``docs/maths.md §N`` reference must name a numbered section heading of that file, every
``maths.md#anchor`` link one of its headings, and the document's own ``§N`` references its own
sections. The checkers are tested on made-up text too, so that they are seen to fail.
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MATHS = ROOT / 'docs' / 'maths.md'
THIS_FILE = pathlib.Path(__file__).resolve()  # it names the patterns it looks for

# What a clone holds that can cite other files.
SCANNED = ('glf_jax', 'configs', 'tests', 'benchmarks', 'launch', 'studies', 'docs', '.ci',
           'README.md', 'pyproject.toml', 'requirements.txt', 'requirements-test.txt')
NOT_SCANNED = (ROOT / 'benchmarks' / 'results',)  # machine output, not committed
TEXT_SUFFIXES = ('.py', '.md', '.txt', '.toml', '.sh', '.sbatch', '.csv', '.json', '.cfg',
                 '.yaml', '.yml', '')  # '': scripts such as .ci/run

# The internal specification's name ("SPEC §3", "SPEC.md", "the SPEC"), case-sensitive.
SPEC_REFERENCE = re.compile(r'\bSPEC\b')
# The folder beside the repository, as text or as a pathlib join ('..' / 'shared').
OUTSIDE_PATH = re.compile(r"\.\./shared\b|'\.\.'\s*/\s*'shared'")

NUMBER = r'\d+(?:\.\d+)*'
SPAN = rf'§\s*{NUMBER}(?:\s*[-–]\s*§?\s*{NUMBER})?'  # §3, §4.2, §1-3, §4.6–§4.9
MATHS_REFERENCE = re.compile(rf'docs/maths\.md\s*({SPAN}(?:\s*,\s*{SPAN})*)')
MATHS_LINK = re.compile(r'docs/maths\.md#([\w\-]+)')
OWN_LINK = re.compile(r'\]\(#([^)\s]+)\)')
HEADING = re.compile(r'^(#{1,6})\s+(.+?)\s*#*\s*$', re.M)
NUMBERED_HEADING = re.compile(rf'^#{{2,6}}\s+({NUMBER})\.?\s', re.M)


def scanned_files() -> list[pathlib.Path]:
  files = []
  for name in SCANNED:
    path = ROOT / name
    candidates = [path] if path.is_file() else sorted(path.rglob('*')) if path.is_dir() else []
    for f in candidates:
      inside = f.relative_to(ROOT).parts[1:-1]
      if (not f.is_file() or f.resolve() == THIS_FILE or f.suffix not in TEXT_SUFFIXES
          or any(part.startswith('.') or part == '__pycache__' for part in inside)
          or any(skip in f.parents for skip in NOT_SCANNED)):
        continue
      files.append(f)
  return files


def read_text(path: pathlib.Path) -> str | None:
  try:
    return path.read_text(encoding='utf-8')
  except UnicodeDecodeError:
    return None  # not a text file


def shown(path: pathlib.Path) -> pathlib.Path:
  """``path`` relative to the repository where it lies inside it."""
  return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def matching_lines(pattern: re.Pattern, files) -> list[str]:
  """``'path:line: text'`` for every line of ``files`` where ``pattern`` occurs."""
  hits = []
  for f in files:
    text = read_text(f)
    if text is None:
      continue
    for number, line in enumerate(text.splitlines(), 1):
      if pattern.search(line):
        hits.append(f'{shown(f)}:{number}: {line.strip()[:120]}')
  return hits


def expand_span(span: str) -> list[str]:
  """The section numbers of one ``§`` span: ``§1-3`` -> 1, 2, 3; ``§4.6–§4.9`` -> 4.6 … 4.9."""
  numbers = re.findall(NUMBER, span)
  if len(numbers) == 1:
    return numbers
  first, last = (n.split('.') for n in numbers)
  if first[:-1] != last[:-1]:
    return numbers  # a range across parents: check its ends
  parent = first[:-1]
  return ['.'.join(parent + [str(k)]) for k in range(int(first[-1]), int(last[-1]) + 1)]


def maths_references(text: str) -> list[str]:
  """Every section number cited as ``docs/maths.md §N`` (ranges and lists expanded)."""
  return [number for match in MATHS_REFERENCE.finditer(text)
          for span in re.findall(SPAN, match.group(1)) for number in expand_span(span)]


def own_references(text: str) -> list[str]:
  """Every section number a document cites as ``§N`` itself."""
  return [number for span in re.findall(SPAN, text) for number in expand_span(span)]


def section_numbers(markdown: str) -> set[str]:
  """Numbers of the numbered headings: ``## 3. ADC`` -> 3, ``### 3.2 P`` -> 3.2."""
  return set(NUMBERED_HEADING.findall(markdown))


def github_anchor(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(markdown: str) -> set[str]:
  """Every heading's anchor (a repeated heading gets ``-1``, ``-2``, … as on GitHub)."""
  seen: dict[str, int] = {}
  out = set()
  for _, heading in HEADING.findall(markdown):
    anchor = github_anchor(heading)
    out.add(anchor if anchor not in seen else f'{anchor}-{seen[anchor]}')
    seen[anchor] = seen.get(anchor, 0) + 1
  return out


def broken_maths_references(files, maths: str) -> list[str]:
  """``'path: §N'`` for each reference to a section or anchor that ``maths`` does not have."""
  sections, heads = section_numbers(maths), anchors(maths)
  broken = []
  for f in files:
    text = read_text(f)
    if text is None:
      continue
    where = shown(f)
    broken += [f'{where}: docs/maths.md §{n}' for n in maths_references(text) if n not in sections]
    broken += [f'{where}: docs/maths.md#{a}' for a in MATHS_LINK.findall(text) if a not in heads]
  return broken


def test_no_reference_to_the_internal_spec():
  hits = matching_lines(SPEC_REFERENCE, scanned_files())
  assert not hits, ('these lines cite the internal specification, which a clone does not have; '
                    'cite docs/maths.md §N instead:\n' + '\n'.join(hits))


def test_no_path_outside_the_repository():
  hits = matching_lines(OUTSIDE_PATH, scanned_files())
  assert not hits, 'these lines refer to files outside the repository:\n' + '\n'.join(hits)


def test_maths_references_name_its_sections():
  maths = MATHS.read_text(encoding='utf-8')
  broken = broken_maths_references(scanned_files(), maths)
  assert not broken, ('references to sections or anchors that docs/maths.md does not have:\n'
                      + '\n'.join(broken))


def test_maths_own_references_and_links_resolve():
  maths = MATHS.read_text(encoding='utf-8')
  sections, heads = section_numbers(maths), anchors(maths)
  assert {str(n) for n in range(6)} <= sections  # §0-§5, cited one for one elsewhere
  missing = sorted({n for n in own_references(maths) if n not in sections})
  assert not missing, (f'docs/maths.md cites §{missing} that it has no heading for (a paper\'s '
                       'section is written "section N", not with §)')
  dead = sorted({a for a in OWN_LINK.findall(maths) if a not in heads})
  assert not dead, f'docs/maths.md links to #{dead}, which none of its headings has'
  assert not SPEC_REFERENCE.search(maths) and not OUTSIDE_PATH.search(maths)


def test_the_checks_find_what_they_look_for(tmp_path):
  doc = ('# Title\n## 0. Notation\n## 1. One\n### 1.2 Part — two\n## 2. Two\n'
         'See §1.2 and §0–§2; [part](#12-part--two).\n')
  assert section_numbers(doc) == {'0', '1', '1.2', '2'}
  assert '12-part--two' in anchors(doc) and '0-notation' in anchors(doc)
  assert own_references(doc) == ['1.2', '0', '1', '2']
  assert maths_references('docs/maths.md §1-3, §4.6–§4.8 and docs/maths.md\n§0') == [
      '1', '2', '3', '4.6', '4.7', '4.8', '0']
  cited = tmp_path / 'cited.py'
  cited.write_text('"""As docs/maths.md §1.2 and docs/maths.md §2-3; docs/maths.md#2-two,\n'
                   'docs/maths.md#2-too."""\n', encoding='utf-8')
  broken = [b.split(': ', 1)[1] for b in broken_maths_references([cited], doc)]
  assert broken == ['docs/maths.md §3', 'docs/maths.md#2-too']
  for line in ('see SPEC §2', 'SPEC.md', "ROOT / '..' / 'shared' / 'data'", 'x = "../shared/a"'):
    cited.write_text(line + '\n', encoding='utf-8')
    assert matching_lines(SPEC_REFERENCE, [cited]) or matching_lines(OUTSIDE_PATH, [cited]), line
  cited.write_text('PartitionSpec, a spec, ../sharedx, shared/data\n', encoding='utf-8')
  assert not matching_lines(SPEC_REFERENCE, [cited])
  assert not matching_lines(OUTSIDE_PATH, [cited])
