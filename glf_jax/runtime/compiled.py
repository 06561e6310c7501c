"""What a compiled program says about itself, per device: memory, work, communication, and the
step time its chip's figures bound it to.

    compiled = jax.jit(step).lower(*abstract_args).compile()
    figures = program_figures(compiled)      # memory, flops / bytes, collectives
    bound = roofline(figures, chip, dtype='bfloat16', images_per_step=512)

* memory (``compiled.memory_analysis()``): argument, output, aliased (donated arguments reused
  for outputs), temporary and generated-code bytes of one device; ``peak_bytes`` adds them up as
  XLA's buffer assignment holds them at once (arguments + outputs − aliased + temporaries + code).
* work (``compiled.cost_analysis()``): ``flops`` and ``bytes accessed`` of one device's program;
  None where the backend gives no analysis (XLA's GPU compiler, compile-only). Its
  ``optimal_seconds`` is not used (negative on TPU for real steps).
* parameters (the entry computation's layout in ``compiled.as_text()``): the bytes of the
  arguments the program keeps (jit drops those it never reads) as their shapes give them
  (``argument_logical_bytes``) and as laid out on the device (``argument_layout_bytes``: TPU tiles
  pad small and odd-sized arrays; XLA's ``argument_bytes`` is this sum).
* collectives: every all-reduce, all-gather, all-to-all, collective-permute and reduce-scatter
  of the optimised HLO (``compiled.as_text()``): count and result bytes by kind (an asynchronous
  pair ``-start``/``-done`` counts once, with the ``-done``'s result).
* :func:`roofline`: the step can be no faster than its FLOPs at the chip's peak matrix rate, nor
  than its bytes at the chip's HBM bandwidth (``glf_jax.runtime.targets.CHIPS``): the larger of
  the two is the estimate (collectives, host input and imperfect overlap only add to it).

Imports nothing of glf_jax.
"""

from __future__ import annotations

import math
import re
from typing import Any

COLLECTIVES = ('all-reduce', 'all-gather', 'all-to-all', 'collective-permute', 'reduce-scatter')
# Bytes per element of an HLO element type (f8 kinds: one byte each).
_ELEMENT_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2,
                  's32': 4, 'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8, 'c64': 8,
                  'c128': 16}
_ARRAY = re.compile(r'\b(pred|[su](?:8|16|32|64)|bf16|f(?:16|32|64)|c(?:64|128)|f8\w*)'
                    r'\[([\d,]*)\](?:\{([^}]*)\})?')
_TILE = re.compile(r'T\(([\d,]+)\)')
# '%name = <shape> <op>(' with op a collective, its asynchronous '-start'/'-done', not '-start'.
_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+('
                          + '|'.join(COLLECTIVES) + r')(-start|-done)?\(')


def shape_bytes(shape: str) -> int:
  """Bytes of an HLO shape: ``f32[64,3]{1,0}`` or a tuple ``(f32[2], bf16[4,4])`` (summed)."""
  return sum(math.prod(_dims(dims)) * _ELEMENT_BYTES.get(element, 1)
             for element, dims, _ in _ARRAY.findall(shape))


def _dims(text: str) -> list[int]:
  return [int(d) for d in text.split(',') if d]


def laid_out_bytes(shape: str) -> int:
  """Bytes of an HLO shape with its layouts (``f32[3]{0:T(256)}``): each array's most minor
  dimensions padded to its first tile, as the device stores it (no tile: as :func:`shape_bytes`).
  """
  total = 0
  for element, dims, layout in _ARRAY.findall(shape):
    sizes = _dims(dims)
    minor_to_major, _, tiling = layout.partition(':')
    order = _dims(minor_to_major) or list(range(len(sizes)))[::-1]
    physical = [sizes[i] for i in reversed(order)]  # major to minor
    tile = _TILE.search(tiling)
    if tile:
      tile = _dims(tile.group(1))
      physical = [1] * max(0, len(tile) - len(physical)) + physical
      minor = [math.ceil(d / t) * t for d, t in zip(physical[-len(tile):], tile)]
      physical = physical[:-len(tile)] + minor
    total += math.prod(physical) * _ELEMENT_BYTES.get(element, 1)
  return total


def entry_parameters(hlo_text: str) -> str:
  """The parameter shapes of the entry computation (``entry_computation_layout={(...)->``)."""
  start = hlo_text.index('entry_computation_layout={(') + len('entry_computation_layout={(')
  return hlo_text[start:hlo_text.index(')->', start)]


def collectives(hlo_text: str) -> dict[str, dict[str, int]]:
  """``{kind: {'count': n, 'bytes': b}}`` of the collectives in an optimised HLO module's text,
  every kind of :data:`COLLECTIVES` present (0 when absent)."""
  found = {kind: {'count': 0, 'bytes': 0} for kind in COLLECTIVES}
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if not match or match.group(3) == '-start':  # the pair is counted at its '-done'
      continue
    shape, kind = match.group(1), match.group(2)
    found[kind]['count'] += 1
    found[kind]['bytes'] += shape_bytes(shape)
  return found


def memory(compiled) -> dict[str, int] | None:
  """One device's memory (module docstring), or None where the backend gives no analysis."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  out = {'argument_bytes': int(stats.argument_size_in_bytes),
         'output_bytes': int(stats.output_size_in_bytes),
         'alias_bytes': int(stats.alias_size_in_bytes),
         'temp_bytes': int(stats.temp_size_in_bytes),
         'code_bytes': int(stats.generated_code_size_in_bytes)}
  out['peak_bytes'] = (out['argument_bytes'] + out['output_bytes'] - out['alias_bytes']
                       + out['temp_bytes'] + out['code_bytes'])
  return out


def work(compiled) -> dict[str, float | None]:
  """One device's ``flops`` and ``bytes_accessed`` per call (None where not analysed)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # a backend without the analysis
    cost = None
  if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
    cost = cost[0] if cost else None
  if not cost:
    return {'flops': None, 'bytes_accessed': None}
  def value(key):
    return float(cost[key]) if cost.get(key) is not None and cost[key] >= 0 else None
  return {'flops': value('flops'), 'bytes_accessed': value('bytes accessed')}


def program_figures(compiled) -> dict[str, Any]:
  """``{'memory': ..., 'flops': ..., 'bytes_accessed': ..., 'collectives': ...}`` of one device
  (see the module docstring)."""
  text = compiled.as_text()
  parameters = entry_parameters(text)
  return {'memory': memory(compiled), **work(compiled),
          'argument_logical_bytes': shape_bytes(parameters),
          'argument_layout_bytes': laid_out_bytes(parameters),
          'collectives': collectives(text)}


def roofline(figures: dict[str, Any], *, matmul_flops_per_s: float, memory_bytes_per_s: float,
             images_per_step: int, epoch_images: int | None) -> dict[str, float | None]:
  """The step time the chip's peak rates bound the program to (module docstring), and what it
  gives: ``compute_seconds`` (FLOPs at the peak matrix rate), ``memory_seconds`` (bytes at the
  HBM bandwidth), ``step_seconds`` (the larger), ``compute_fraction`` (compute over step: 1 when
  compute-bound; small when the step moves more bytes than it computes — e.g. a small per-device
  batch beside the replicated state's update), ``images_per_second`` and ``epoch_seconds``. All
  None when the backend gave no cost analysis."""
  flops, moved = figures.get('flops'), figures.get('bytes_accessed')
  if flops is None or moved is None:
    return dict.fromkeys(('compute_seconds', 'memory_seconds', 'step_seconds', 'compute_fraction',
                          'images_per_second', 'epoch_seconds'))
  compute_s = flops / matmul_flops_per_s
  memory_s = moved / memory_bytes_per_s
  step_s = max(compute_s, memory_s)
  per_second = images_per_step / step_s if step_s > 0 else None
  return {'compute_seconds': compute_s, 'memory_seconds': memory_s, 'step_seconds': step_s,
          'compute_fraction': compute_s / step_s if step_s > 0 else None,
          'images_per_second': per_second,
          'epoch_seconds': epoch_images / per_second if per_second and epoch_images else None}
