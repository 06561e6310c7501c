"""Progress of long loops, shared by pretraining, evaluation and data preparation.

``Progress(total, desc=...)`` is told the position with ``update(n)``. On a terminal (stdout is a
tty) it draws a tqdm bar; elsewhere (CI, SLURM logs, pipes, pytest) it prints plain lines

    step 120/4000  epoch 0.62  1850.3 img/s  ETA 0:34:56  |  loss 5.1234  ...

every ``every`` units, at least every ``interval_s`` seconds and at the end, so a log shows the
run moving without a line per step. The rate and ETA are measured from the first update on: the
first unit (where XLA compiles) does not inflate them. Only process 0 shows anything.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

import jax
from tqdm import tqdm

# Plain-line mode: the longest wait between two lines, in seconds.
INTERVAL_S = 30.0
# Terminal mode: the shortest wait between two redraws of the bar, in seconds.
REDRAW_S = 0.5


def format_eta(seconds: float | None) -> str:
  """``h:mm:ss``; ``-:--:--`` when unknown."""
  if seconds is None:
    return '-:--:--'
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


def is_chief() -> bool:
  """Whether this process shows progress (process 0)."""
  return jax.process_index() == 0


def is_terminal(stream: TextIO) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):  # no isatty, or closed
    return False


def announce(message: str) -> None:
  """Prints ``message`` on process 0 (a one-off line, e.g. before a long step starts)."""
  if is_chief():
    print(message, flush=True)


def announce_compiling(what: str) -> None:
  """Says, before a loop's first step, that it waits for XLA to compile ``what`` (seconds to a
  minute or more on a CPU, with nothing else printed)."""
  announce(f'compiling {what} (the first step waits for XLA; the progress lines follow)')


class Progress:
  """A tqdm bar on a terminal, plain lines otherwise; see the module docstring.

  Args:
    total: the final position.
    desc: what is counted (the line starts with ``f'{desc} {n}/{total}'``).
    unit: the rate's unit (``'img'`` gives ``img/s``).
    scale: units per position (e.g. images per step).
    initial: the starting position (a resumed run's step).
    every: plain lines at every multiple of ``every`` positions (0: by time only).
    interval_s: plain lines at least this often (None: ``INTERVAL_S``).
    tty: draw a bar (True) or print lines (False); None: whether ``stream`` is a terminal.
    enabled: show anything; None: process 0 only.
    stream: where to write (None: ``sys.stdout`` now).
    clock: seconds (tests pass a fake one).
  """

  def __init__(self, total: int, *, desc: str, unit: str = 'it', scale: float = 1.0,
               initial: int = 0, every: int = 0, interval_s: float | None = None,
               tty: bool | None = None, enabled: bool | None = None,
               stream: TextIO | None = None, clock: Callable[[], float] = time.perf_counter):
    self.total, self.n, self.desc, self.unit = int(total), int(initial), desc, unit
    self.scale, self.every = float(scale), max(0, int(every))
    self.interval_s = INTERVAL_S if interval_s is None else float(interval_s)
    self.enabled = is_chief() if enabled is None else bool(enabled)
    self.stream = sys.stdout if stream is None else stream
    self.tty = is_terminal(self.stream) if tty is None else bool(tty)
    self._clock = clock
    self._start = (clock(), self.n)
    self._origin = None  # (time, position) of the first update: the rate starts there
    self._shown = (self._start[0], self.n)  # the last line printed / bar redrawn
    self._head, self._tail = '', None
    self.bar = None
    if self.enabled and self.tty:
      self.bar = tqdm(total=self.total, initial=self.n, desc=desc, file=self.stream,
                      dynamic_ncols=True,
                      bar_format='{desc} {n_fmt}/{total_fmt} {percentage:3.0f}%|{bar}| '
                                 '{elapsed}{postfix}')

  def rate(self) -> float | None:
    """Units per second since the first update; None before a second one (at the end: since
    the start, when the first update was the last)."""
    now, (t0, n0) = self._clock(), self._origin or self._start
    if self.n <= n0 and self.n >= self.total:
      t0, n0 = self._start
    if self.n <= n0 or now <= t0:
      return None
    return (self.n - n0) * self.scale / (now - t0)

  def eta(self) -> float | None:
    """Seconds left at :meth:`rate`; None before it is known."""
    if self.n >= self.total:
      return 0.0
    rate = self.rate()
    return None if not rate else (self.total - self.n) * self.scale / rate

  def _stats(self) -> str:
    rate = self.rate()
    shown = '-' if rate is None else f'{rate:.1f}'
    return f'{shown} {self.unit}/s  ETA {format_eta(self.eta())}'

  def _tail_text(self) -> str:
    return (self._tail() if callable(self._tail) else self._tail) or ''

  def line(self) -> str:
    """The plain line of the current position."""
    line = '  '.join(p for p in (f'{self.desc} {self.n}/{self.total}', self._head,
                                 self._stats()) if p)
    tail = self._tail_text()
    return f'{line}  |  {tail}' if tail else line

  def update(self, n: int, *, head: str = '', tail: str | Callable[[], str] | None = None
             ) -> None:
    """Moves to position ``n``. ``head`` goes after the position, ``tail`` (a string, or a
    callable evaluated only when shown: e.g. a read of device values) after ``|``."""
    if not self.enabled:
      return
    now = self._clock()
    if self._origin is None:
      self._origin = (now, int(n))
    self.n, self._head, self._tail = int(n), head, tail
    end = self.n >= self.total and self._shown[1] != self.n
    if self.bar is not None:
      if end or now - self._shown[0] >= REDRAW_S:
        self._redraw(now)
      return
    every_due = self.every and self.n // self.every > self._shown[1] // self.every
    if end or every_due or now - self._shown[0] >= self.interval_s:
      self._print(now)

  def _redraw(self, now: float) -> None:
    parts = (self._head, self._stats(), self._tail_text())
    self.bar.n = self.n
    self.bar.set_postfix_str('  '.join(p for p in parts if p), refresh=False)
    self.bar.refresh()
    self._shown = (now, self.n)

  def _print(self, now: float) -> None:
    print(self.line(), file=self.stream, flush=True)
    self._shown = (now, self.n)

  def write(self, message: str) -> None:
    """Prints ``message`` (process 0) without breaking the bar."""
    if not self.enabled:
      return
    if self.bar is not None:
      self.bar.write(message, file=self.stream)
    else:
      print(message, file=self.stream, flush=True)

  def close(self) -> None:
    """Shows the last position (if not shown yet) and closes the bar."""
    if not self.enabled:
      return
    if self.bar is not None:
      if self._shown[1] != self.n:
        self._redraw(self._clock())
      self.bar.close()
      self.bar = None
    elif self._origin is not None and self._shown[1] != self.n:
      self._print(self._clock())
    self.enabled = False

  def __enter__(self) -> Progress:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
