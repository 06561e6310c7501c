"""What the benchmark scripts share: their Markdown table and their JSON results file."""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any, Callable, Sequence

# A column: (header, right-aligned, the cell's text of a row).
Column = tuple[str, bool, Callable[[dict], str]]


def markdown_table(columns: Sequence[Column], rows: Sequence[dict]) -> str:
  """``rows`` as a Markdown table of ``columns``."""
  lines = ['| ' + ' | '.join(header for header, _, _ in columns) + ' |',
           '|' + '|'.join('---:' if right else '---' for _, right, _ in columns) + '|']
  lines += ['| ' + ' | '.join(cell(row) for _, _, cell in columns) + ' |' for row in rows]
  return '\n'.join(lines)


def write_json(path: pathlib.Path, results: dict[str, Any]) -> None:
  """Writes ``results`` (indented JSON) to ``path``, making its folder; says so on stderr."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(results, f, indent=2)
  print(f'Wrote {path}', file=sys.stderr)
