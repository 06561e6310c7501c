"""pyproject.toml declares what requirements.txt installs, and the package is complete."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _requirements(path):
  lines = (line.split('#')[0].strip() for line in path.read_text().splitlines())
  return sorted(line for line in lines if line)


def test_pyproject_dependencies_are_requirements_txt():
  project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
  assert sorted(project['dependencies']) == _requirements(ROOT / 'requirements.txt')
  assert sorted(project['optional-dependencies']['test']) == _requirements(
      ROOT / 'requirements-test.txt')


def test_every_package_directory_has_an_init():
  for directory in (ROOT / 'glf_jax').rglob('*'):
    if directory.is_dir() and directory.name != '__pycache__' and any(directory.glob('*.py')):
      assert (directory / '__init__.py').exists(), directory
