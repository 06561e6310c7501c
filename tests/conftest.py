"""Test set-up: 8 simulated CPU devices, a persistent compilation cache, and XLA's code generation
at its lowest optimisation level for the computations tests run in process.

The device count must be set before JAX initialises its backends, so it happens here, at import,
before any test module runs.
"""

import faulthandler
import os
import pathlib
import shutil
import tarfile
import tempfile

import pytest

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


# Real CIFAR-10 JPEGs for the end-to-end tests (../shared/data; always present in CI).
ARCHIVE = (pathlib.Path(__file__).resolve().parent.parent / '..' / 'shared' / 'data' /
           'cifar10-jpeg.tar.gz').resolve()
CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
           'truck')
PER_CLASS = {'train': 40, 'test': 4}
GLOBAL_BATCH = 64



@pytest.fixture(scope='session')
def cifar_root(tmp_path_factory):
  """Extracts the first PER_CLASS[split] images of every class, streaming through the archive."""
  root = tmp_path_factory.mktemp('cifar10')
  taken = {(split, c): 0 for split in PER_CLASS for c in CLASSES}
  wanted = sum(PER_CLASS.values()) * len(CLASSES)
  with tarfile.open(ARCHIVE, 'r|gz') as archive:  # 'r|': a stream, read once, no seeking
    for member in archive:
      parts = pathlib.PurePosixPath(member.name).parts  # cifar10/<split>/<class>/NNNN.jpg
      if not member.isfile() or len(parts) != 4 or (parts[1], parts[2]) not in taken:
        continue
      key = (parts[1], parts[2])
      if taken[key] >= PER_CLASS[parts[1]]:
        continue
      target = root.joinpath(*parts[1:])
      target.parent.mkdir(parents=True, exist_ok=True)
      target.write_bytes(archive.extractfile(member).read())
      taken[key] += 1
      wanted -= 1
      if not wanted:
        break
  assert wanted == 0, f'archive {ARCHIVE} lacks some images: {taken}'
  return root


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
  limit = request.config.getini('timeout')
  folder = os.environ.get('GLF_JAX_HANG_DUMPS')
  if not folder or not limit or float(limit) <= 30:
    yield
    return
  with open(os.path.join(folder, f'{os.getpid()}.txt'), 'a', encoding='utf-8') as dump:
    dump.write(f'--- {request.node.nodeid} still running after {float(limit) - 20:.0f} s\n')
    dump.flush()
    faulthandler.dump_traceback_later(float(limit) - 20, file=dump)
    try:
      yield
    finally:
      faulthandler.cancel_dump_traceback_later()
      dump.seek(0)
      dump.truncate()  # finished in time: nothing to report


def pytest_terminal_summary(terminalreporter):
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
