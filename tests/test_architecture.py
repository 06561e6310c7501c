"""The package's layout: layers without import cycles, one registry style, short functions, and
every term checking its own hyperparameters with the aux-key rule enforced."""

import ast
import pathlib

import jax
import numpy as np
import pytest

from glf_jax import constraints
from glf_jax import evaluate
from glf_jax import methods
from glf_jax import prior
from glf_jax import registry
from glf_jax.data import recipes
from glf_jax.losses import glf
from glf_jax.train import optimizers

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'glf_jax'
# The layers, bottom first: a package (or root module) may import only the ones before it. A new
# package must be placed here (and in docs/development.md's architecture section).
LAYERS = ('registry', 'runtime', 'losses', 'metrics', 'data', 'models', 'constraints', 'methods',
          'run', 'evaluate', 'prior', 'train', 'plots', 'config', 'cohort', 'modes', 'study',
          'flag_errors', 'main')
MAX_FUNCTION_LINES = 80


def _node(module: str) -> str | None:
  """``glf_jax.run.session`` -> ``run``; ``glf_jax.config`` -> ``config``; others: None."""
  parts = module.split('.')
  return parts[1] if parts[0] == 'glf_jax' and len(parts) > 1 else None


def _imports(path: pathlib.Path) -> set[str]:
  """Every glf_jax module ``path`` imports, at module level or inside a function."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      found.update(f'{node.module}.{a.name}' for a in node.names)
  return {m for m in found if m.startswith('glf_jax.')}


def _edges() -> dict[str, set[str]]:
  edges = {}
  for path in PACKAGE.rglob('*.py'):
    relative = path.relative_to(PACKAGE.parent).with_suffix('')
    source = _node('.'.join(relative.parts))
    if source in (None, '__init__'):  # glf_jax/__init__.py
      continue
    targets = {_node(m) for m in _imports(path)} - {source, None}
    edges.setdefault(source, set()).update(targets)
  return edges


def test_every_package_sits_in_a_layer():
  assert set(_edges()) <= set(LAYERS), sorted(set(_edges()) - set(LAYERS))


def test_packages_import_only_the_layers_below_them():
  rank = {name: i for i, name in enumerate(LAYERS)}
  upward = sorted((source, target) for source, targets in _edges().items()
                  for target in targets if rank[target] >= rank[source])
  assert not upward, f'imports of a layer at or above the importer (a cycle waiting): {upward}'


def test_no_import_cycle_between_packages():
  edges = _edges()
  visiting, done = [], set()

  def visit(node):
    if node in visiting:
      raise AssertionError(f'import cycle: {" -> ".join(visiting[visiting.index(node):])} -> {node}')
    if node in done:
      return
    visiting.append(node)
    for target in sorted(edges.get(node, ())):
      visit(target)
    visiting.pop()
    done.add(node)
  for node in sorted(edges):
    visit(node)


def test_no_function_is_longer_than_80_lines():
  long = []
  for path in sorted(PACKAGE.rglob('*.py')):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
          long.append(f'{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)')
  assert not long, long


@pytest.mark.parametrize('table,package,attribute', [
    (methods.METHODS, 'glf_jax.methods', 'METHOD'),
    (constraints.CONSTRAINTS, 'glf_jax.constraints', 'CONSTRAINT'),
    (evaluate.EVALUATORS, 'glf_jax.evaluate', 'EVALUATOR'),
    (prior.PRIORS, 'glf_jax.prior', 'PRIOR'),
    (recipes.RECIPES, 'glf_jax.data.recipes', 'RECIPE'),
    (optimizers.OPTIMIZERS, 'glf_jax.train.optimizers', 'OPTIMIZER'),
])
def test_every_registry_is_its_package_modules(table, package, attribute):
  kind = type(next(iter(table.values())))
  assert registry.collect(package, attribute, kind) == table
  assert all(name == record.name for name, record in table.items())


def test_a_registry_refuses_two_entries_with_one_name(tmp_path, monkeypatch):
  pkg = tmp_path / 'twin_registry'
  pkg.mkdir()
  (pkg / '__init__.py').write_text('')
  for module in ('a', 'b'):
    (pkg / f'{module}.py').write_text(
        'from glf_jax.data.recipes import Recipe\nRECIPE = Recipe("same", dict)\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(ValueError, match="named 'same', like another entry"):
    registry.collect('twin_registry', 'RECIPE', recipes.Recipe)


def _terms():
  for name, record in sorted(methods.METHODS.items()):
    yield name, record.term
  for name, record in sorted(constraints.CONSTRAINTS.items()):
    yield name, record.term


@pytest.mark.parametrize('name,term', list(_terms()), ids=[n for n, _ in _terms()])
def test_every_term_checks_each_numeric_hyperparameter(name, term):
  """Each term's own check refuses a negative value of every numeric hyperparameter it has (none
  of them takes one), naming the key."""
  for key, value in term.defaults.items():
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      continue
    bad = {**term.defaults, key: -1 if isinstance(value, int) else -1.0}
    with pytest.raises(ValueError, match=f'objective.{name}.{key}'):
      glf.term_hyperparameters({name: {key: bad[key]}}, name, term)


def test_a_term_with_hyperparameters_must_check_them():
  with pytest.raises(ValueError, match='needs check='):
    glf.Term(lambda o, b, weight: (weight, {}), dict(weight=1.0))


def test_aux_keys_follow_the_rule_for_every_method():
  """``<term>`` and ``<term>/<stat>`` (one level) and ``loss``, for every method with ADC."""
  from tests.test_glf import BATCH, OUTPUTS  # pylint: disable=g-import-not-at-top
  for name in sorted(methods.METHODS):
    config = methods.objective_config(f'{name}+adc')
    if name == 'wmse':
      config.wmse.w_size = 3
    _, aux = jax.jit(methods.build_objective(config))(OUTPUTS, BATCH)
    terms = (name, 'adc')
    for key in aux:
      head, *rest = key.split('/')
      assert key == 'loss' or (head in terms and len(rest) <= 1), (name, key)


def test_a_loss_returning_a_nested_aux_key_is_refused():
  term = glf.Term(lambda o, b: (np.float32(0.0), {'vicreg/invariance': np.float32(0.0)}), {})
  objective = glf.compose([('vicreg', term, {})])
  with pytest.raises(ValueError, match="aux keys \\['vicreg/invariance'\\]"):
    objective({'z1': np.ones((2, 2)), 'z2': np.ones((2, 2))}, {})
