"""Test set-up: 8 simulated CPU devices, a persistent compilation cache, and XLA's code generation
at its lowest optimisation level for the computations tests run in process; the made image folder
the end-to-end tests train on (tests read nothing outside the repository, unless
$GLF_JAX_CIFAR10_ARCHIVE names the real CIFAR-10 archive); and the one clock of child processes,
derived from pytest-timeout's limit (no test depends on the machine's speed).

The device count must be set before JAX initialises its backends, so it happens here, at import,
before any test module runs.
"""

import colorsys
import faulthandler
import os
import pathlib
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time

import numpy as np
from PIL import Image
import pytest
import pytest_timeout

import jax

jax.config.update('jax_platforms', 'cpu')
jax.config.update('jax_num_cpu_devices', 8)

_CACHE = os.environ.get('GLF_JAX_TEST_CACHE',
                        str(pathlib.Path(__file__).resolve().parent.parent / '.jax_cache'))
jax.config.update('jax_compilation_cache_dir', _CACHE)
# The CLI runs of subprocess tests use it too (glf_jax.runtime.compile_cache defers to the
# variable), never the user's ~/.cache/glf_jax/xla.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
# Most in-process tests compile a program and run it a few times on small inputs: compiling is
# their cost, and XLA's backend optimisations (LLVM's passes) halve a step test's time when off.
# The graph-level (HLO) passes still run: the same computation, and the suite passes either way
# (tolerances, and bit-identity only ever between two runs compiled alike). Subprocess runs (the
# CLI, the launchers, the benchmark scripts) keep the optimisations a user gets: this is not
# passed to them through the environment. Tests that run much more than they compile are marked
# ``optimized`` and run with the optimisations on (see _xla_optimizations).
jax.config.update('jax_disable_most_optimizations', True)


# The image folder the end-to-end tests train on: CIFAR-10's layout and sizes, made by
# write_image_folder (never read from outside the repository).
CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
           'truck')
PER_CLASS = {'train': 40, 'test': 4}
GLOBAL_BATCH = 64
# The real CIFAR-10 JPEG archive (cifar10/{train,test}/<class>/*.jpg): used only when this
# variable names it; tests/test_cifar10_end_to_end.py then runs its pipeline check on it as well.
CIFAR10_ARCHIVE_VARIABLE = 'GLF_JAX_CIFAR10_ARCHIVE'


def write_image_folder(root, per_class=None, classes=CLASSES, size=32, seed=0):
  """Writes ``root/<split>/<class>/NNNN.jpg``: ``per_class[split]`` images of every class.

  JPEGs, as CIFAR-10's are. Each class is a colour and a stripe direction of its own (a linear
  probe on the pixels separates the classes); phase, contrast and noise vary per image.
  """
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:size, 0:size] / size
  for split, count in (per_class or PER_CLASS).items():
    for label, name in enumerate(classes):
      folder = pathlib.Path(root) / split / name
      folder.mkdir(parents=True, exist_ok=True)
      colour = 255 * np.array(colorsys.hsv_to_rgb(label / len(classes), 0.6, 0.7))
      angle = np.pi * label / len(classes)
      for i in range(count):
        wave = np.sin(2 * np.pi * (3 * (x * np.cos(angle) + y * np.sin(angle)) + rng.random()))
        pixels = (colour + rng.uniform(30, 60) * wave[..., None]
                  + rng.normal(0, 10, (size, size, 3)))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            folder / f'{i:04d}.jpg', quality=90)
  return pathlib.Path(root)


@pytest.fixture(scope='session')
def image_root(tmp_path_factory):
  """A made CIFAR-10-like folder (10 classes, 40 train + 4 test 32x32 JPEGs each)."""
  return write_image_folder(tmp_path_factory.mktemp('images'))


@pytest.fixture(scope='session')
def cifar10_root(tmp_path_factory):
  """PER_CLASS[split] real CIFAR-10 JPEGs of every class, streamed out of the archive named by
  $GLF_JAX_CIFAR10_ARCHIVE; skips (one line saying how to run it) when the variable is unset."""
  archive = os.environ.get(CIFAR10_ARCHIVE_VARIABLE)
  if not archive:
    pytest.skip(f'real CIFAR-10 not checked: set {CIFAR10_ARCHIVE_VARIABLE} to '
                'cifar10-jpeg.tar.gz (the same checks run on a made image folder)')
  root = tmp_path_factory.mktemp('cifar10')
  taken = {(split, c): 0 for split in PER_CLASS for c in CLASSES}
  wanted = sum(PER_CLASS.values()) * len(CLASSES)
  with tarfile.open(archive, 'r|gz') as stream:  # 'r|': a stream, read once, no seeking
    for member in stream:
      parts = pathlib.PurePosixPath(member.name).parts  # cifar10/<split>/<class>/NNNN.jpg
      if not member.isfile() or len(parts) != 4 or (parts[1], parts[2]) not in taken:
        continue
      key = (parts[1], parts[2])
      if taken[key] >= PER_CLASS[parts[1]]:
        continue
      target = root.joinpath(*parts[1:])
      target.parent.mkdir(parents=True, exist_ok=True)
      target.write_bytes(stream.extractfile(member).read())
      taken[key] += 1
      wanted -= 1
      if not wanted:
        break
  assert wanted == 0, f'archive {archive} lacks some images: {taken}'
  return root


# ------------------------------------------------------------------------------------------------
# Child processes: the suite's hang timeout is the only clock

CHILD_MARGIN_S = 30  # a child is stopped this long before pytest-timeout would stop its test
_test_deadline = None  # time.monotonic() at which the running test's children are stopped


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
  """Sets the running test's deadline for its children (pytest-timeout's clock starts here too:
  it covers the test's set-up, call and teardown)."""
  global _test_deadline
  limit = _test_limit_s(item.config)
  _test_deadline = (time.monotonic() + limit - min(CHILD_MARGIN_S, limit / 2)) if limit else None
  try:
    return (yield)
  finally:
    _test_deadline = None


def child_time_left():
  """Seconds the running test's child processes may still take, or None (no hang timeout).

  Just under pytest-timeout's limit for the test (the same ``timeout`` setting, CHILD_MARGIN_S
  earlier), so a hung child is killed and its output shown, rather than left running after
  pytest-timeout ends the worker. Never a measure of speed: a slow machine reaches it only when
  the test would be stopped as hung anyway.
  """
  if _test_deadline is None:
    return None
  return max(_test_deadline - time.monotonic(), 1.0)


def run_child(command, **kwargs):
  """``subprocess.run(command, capture_output=True, text=True, **kwargs)`` bounded by
  :func:`child_time_left`, in a session of its own: when the time is up the whole process group
  (a launcher *and* the processes it started) is killed and the test fails with its output."""
  with subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, **kwargs) as proc:
    try:
      out, err = proc.communicate(timeout=child_time_left())
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      out, err = proc.communicate()
      raise AssertionError(f'{command[:4]} still running just before the test\'s hang timeout; '
                           f'killed:\n{out[-3000:]}\n{err[-3000:]}') from None
  return subprocess.CompletedProcess(command, proc.returncode, out, err)


def child_lines(proc):
  """``proc``'s output lines as they come, then its exit awaited; a child still running when
  :func:`child_time_left` runs out is killed (its output then ends), so a hung child fails the
  test instead of outliving it."""
  left = child_time_left()
  watchdog = threading.Timer(left, proc.kill) if left is not None else None
  if watchdog:
    watchdog.start()
  try:
    yield from proc.stdout
    proc.wait()
  finally:
    if watchdog:
      watchdog.cancel()


def _test_limit_s(config):
  """pytest-timeout's limit per test (its command-line option, environment or ini value)."""
  timeout = pytest_timeout.get_env_settings(config).timeout
  return float(timeout) if timeout else None


# The fast tier, for the edit-test loop: python -m pytest tests -m "not slow" -n 2 (2 minutes
# on 2 cores). "slow": the end-to-end runs in subprocesses, the benchmark smoke runs, and the
# exhaustive numerical sweeps (each loss is still checked against its reference in the fast tier).
SLOW_MODULES = ('test_train_loop', 'test_launch', 'test_main_tfds', 'test_benchmarks',
                'test_cifar10_end_to_end', 'test_xla_cpu', 'test_checkpoint',
                'test_losses_properties', 'test_losses_blockwise', 'test_losses_sharding')


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: not in the fast tier (-m "not slow")')
  config.addinivalue_line('markers', "optimized: compiled with XLA's backend optimisations (a "
                          'test that runs far longer than it compiles)')
  if not hasattr(config, 'workerinput') and 'GLF_JAX_HANG_DUMPS' not in os.environ:
    # The controller (or a run without xdist): where a test near pytest-timeout's limit dumps
    # every thread's stack (see _hang_dump). The xdist workers inherit the variable;
    # pytest_terminal_summary prints what was dumped; pytest_unconfigure removes the folder.
    config.hang_dumps = tempfile.mkdtemp(prefix='glf_jax_hangs_')
    os.environ['GLF_JAX_HANG_DUMPS'] = config.hang_dumps


def pytest_unconfigure(config):
  if getattr(config, 'hang_dumps', None):
    shutil.rmtree(config.hang_dumps, ignore_errors=True)
    os.environ.pop('GLF_JAX_HANG_DUMPS', None)


@pytest.fixture(autouse=True)
def _xla_optimizations(request):
  if request.node.get_closest_marker('optimized') is None:
    yield
    return
  jax.config.update('jax_disable_most_optimizations', False)
  try:
    yield
  finally:
    jax.config.update('jax_disable_most_optimizations', True)


@pytest.fixture(autouse=True)
def _hang_dump(request):
  """Dumps every thread's stack to a file 20 s before pytest-timeout stops a hung test.

  pytest-timeout's own dump goes to the worker's captured stderr, which xdist drops with the
  crashed worker; this file survives it, and the controller prints it at the end."""
  limit = _test_limit_s(request.config)
  folder = os.environ.get('GLF_JAX_HANG_DUMPS')
  if not folder or not limit or limit <= 30:
    yield
    return
  with open(os.path.join(folder, f'{os.getpid()}.txt'), 'a', encoding='utf-8') as dump:
    dump.write(f'--- {request.node.nodeid} still running after {limit - 20:.0f} s\n')
    dump.flush()
    faulthandler.dump_traceback_later(limit - 20, file=dump)
    try:
      yield
    finally:
      faulthandler.cancel_dump_traceback_later()
      dump.seek(0)
      dump.truncate()  # finished in time: nothing to report


def pytest_terminal_summary(terminalreporter):
  # The real-data check's skip, said in one line even under -q (which lists no skip reasons).
  reasons = {str(report.longrepr[-1]) for report in terminalreporter.stats.get('skipped', [])
             if isinstance(report.longrepr, tuple) and CIFAR10_ARCHIVE_VARIABLE in
             str(report.longrepr[-1])}
  for reason in sorted(reasons):
    terminalreporter.write_line(reason.removeprefix('Skipped: '))
  folder = os.environ.get('GLF_JAX_HANG_DUMPS')
  for dump in sorted(pathlib.Path(folder).glob('*.txt')) if folder else ():
    text = dump.read_text(encoding='utf-8', errors='replace').strip()
    if text:
      terminalreporter.write_sep('=', f'stacks of a hung test (process {dump.stem})')
      terminalreporter.write_line(text)


def pytest_collection_modifyitems(items):
  for item in items:
    if item.module.__name__.rsplit('.', 1)[-1] in SLOW_MODULES:
      item.add_marker(pytest.mark.slow)
