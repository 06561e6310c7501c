"""The compile mode: a small config's train step compiled for a TPU slice and a GPU box on this CPU,
its report checked against what the shardings imply; the target names, the HLO readers and the
roofline on their own.

The compiling tests need the compilers (``pip install -e .[tpu-aot,gpu-aot]``) and skip without
them; CI installs them in a step of its own (.ci/run) that runs this file.
"""

import json
import re
import sys

import jax
import jax.numpy as jnp
import pytest

from glf_jax import config as config_lib
from glf_jax.modes import compile as compile_mode
from glf_jax.runtime import compiled as compiled_lib
from glf_jax.runtime import targets
from glf_jax.train.setup import build_training
from tests.conftest import run_child
from tests.test_train_loop import ROOT, _env

TPU, GPU = 'tpu:v5e:2x2', 'gpu:h100x8'
needs_tpu = pytest.mark.skipif(not targets.compiler_installed('tpu'),
                               reason='no TPU compiler: pip install -e .[tpu-aot]')
needs_gpu = pytest.mark.skipif(not targets.compiler_installed('gpu'),
                               reason='no GPU compiler: pip install -e .[gpu-aot]')


def _config(target):
  """configs/simclr.py:tiny (digits 16 px, ResNet-tiny, batch 64) in compile mode."""
  config = config_lib.load_config_file('configs/simclr.py:tiny')
  config.mode = 'compile'
  config.compile.target = target
  return config


def _nbytes(tree):
  return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


# ------------------------------------------------------------------------------------------------
# Targets, HLO readers, roofline: no compiler needed.

@pytest.mark.parametrize('spec,chip,topology,count', [
    ('tpu:v5e:2x2', 'v5e', '2x2', 4), ('tpu:v4:2x2x1', 'v4', '2x2x1', 4),
    ('tpu:v5e:8x8', 'v5e', '8x8', 64), ('gpu:h100x8', 'h100', '1x1x8', 8),
    ('gpu:a100x2', 'a100', '1x1x2', 2)])
def test_targets_parse(spec, chip, topology, count):
  target = targets.parse_target(spec)
  assert (target.chip.name, target.topology, target.num_devices) == (chip, topology, count)


@pytest.mark.parametrize('spec,says', [
    ('tpu:v9:2x2', "unknown tpu chip 'v9'"), ('tpu:v5e:2y2', 'topology'),
    ('gpu:h100', "'h100' is not <chip>x<count>"), ('gpu:v5ex4', 'unknown gpu chip'),
    ('npu:x:1', "unknown platform 'npu'"), (None, 'not a target')])
def test_a_bad_target_says_what_a_target_is(spec, says):
  with pytest.raises(ValueError, match='tpu:<chip>:<topology> or gpu:<chip>x<count>') as error:
    targets.parse_target(spec)
  assert says in str(error.value)


def test_every_gpu_chip_has_its_target_description():
  for chip in targets.CHIPS.values():
    assert chip.source and set(chip.matmul_flops_per_s) == {'float32', 'bfloat16'}
    if chip.platform == 'gpu':
      text = targets.gpu_target_config(chip)
      assert 'gpu_device_info' in text and 'platform_name: "CUDA"' in text


HLO = """HloModule jit_step, entry_computation_layout={(f32[3]{0:T(256)}, bf16[2,3,5]{2,1,0:T(8,128)(2,1)}, f32[]{:T(128)}, s32[7]{0})->f32[]}

%fused (p: f32[64]) -> f32[64] {
  %all-reduce.1 = f32[64]{0} all-reduce(%p), channel_id=1, to_apply=%add
}

ENTRY %main {
  %all-reduce-start = (f32[10]{0}, bf16[4,4]{1,0}) all-reduce-start(%a, %b), channel_id=2
  %all-reduce-done = (f32[10]{0}, bf16[4,4]{1,0}) all-reduce-done(%all-reduce-start)
  %ag = f32[8,2]{1,0:T(8,128)} all-gather(%c), dimensions={0}
  %cp-start = (u8[5]{0}, u8[5]{0}, u32[], u32[]) collective-permute-start(%d)
  ROOT %cp-done = u8[5]{0} collective-permute-done(%cp-start)
  %x = f32[4]{0} add(%all-reduce.1, %all-reduce.1), metadata={op_name="all-to-all("}
}
"""


def test_collectives_count_each_op_once_with_its_result_bytes():
  found = compiled_lib.collectives(HLO)
  assert found['all-reduce'] == {'count': 2, 'bytes': 64 * 4 + 10 * 4 + 16 * 2}
  assert found['all-gather'] == {'count': 1, 'bytes': 16 * 4}
  assert found['collective-permute'] == {'count': 1, 'bytes': 5}
  assert found['all-to-all'] == found['reduce-scatter'] == {'count': 0, 'bytes': 0}


def test_entry_parameters_logical_and_tiled_bytes():
  parameters = compiled_lib.entry_parameters(HLO)
  assert compiled_lib.shape_bytes(parameters) == 3 * 4 + 30 * 2 + 4 + 7 * 4
  # f32[3] -> 256 rows; bf16[2,3,5] -> 2 x (8 x 128); a scalar -> 128; s32[7] untiled.
  assert compiled_lib.laid_out_bytes(parameters) == 256 * 4 + 2 * 8 * 128 * 2 + 128 * 4 + 7 * 4


def test_roofline_is_the_slower_of_compute_and_memory():
  bound = compiled_lib.roofline({'flops': 2e12, 'bytes_accessed': 1e9}, matmul_flops_per_s=1e15,
                                memory_bytes_per_s=1e12, images_per_step=512,
                                epoch_images=51200)
  assert bound['compute_seconds'] == pytest.approx(2e-3)
  assert bound['memory_seconds'] == pytest.approx(1e-3)
  assert bound['step_seconds'] == bound['compute_seconds']
  assert bound['compute_fraction'] == 1.0
  assert bound['images_per_second'] == pytest.approx(256_000)
  assert bound['epoch_seconds'] == pytest.approx(0.2)
  assert set(compiled_lib.roofline({'flops': None, 'bytes_accessed': None},
                                   matmul_flops_per_s=1, memory_bytes_per_s=1, images_per_step=1,
                                   epoch_images=1).values()) == {None}


def test_the_compile_mode_needs_a_target():
  with pytest.raises(ValueError, match='needs --config.compile.target'):
    config_lib.validate(_config(None))
  with pytest.raises(ValueError, match="unknown tpu chip 'v3'"):
    config_lib.validate(_config('tpu:v3:2x2'))
  config_lib.validate(_config(TPU))


def _cli(workdir, target, *overrides):
  return run_child(
      [sys.executable, '-m', 'glf_jax.main', '--config', 'configs/simclr.py:tiny', '--workdir',
       str(workdir), '--config.mode=compile', f'--config.compile.target={target}', *overrides],
      cwd=ROOT, env=_env())


@pytest.mark.skipif(targets.compiler_installed('tpu'), reason='the TPU compiler is installed')
def test_without_the_compiler_one_error_line_names_the_extra(tmp_path):
  run = _cli(tmp_path / 'w', TPU)
  assert run.returncode == 1
  assert run.stderr.strip().splitlines()[-1] == (
      'error: compiling for tpu:v5e:2x2 needs the TPU compiler, which is not installed: pip '
      'install -e .[tpu-aot]  (or jax[tpu])')


# ------------------------------------------------------------------------------------------------
# Compiling for a target: what the report says against what the shardings imply.

def _implied(config, devices):
  """The replicated state's bytes and the batch's bytes per device that the step reads (jit
  drops the batch's ``index``: the pixel prior does not look examples up)."""
  sizes = compile_mode.data_sizes(config)
  state = build_training(config, steps_per_epoch=1, num_classes=sizes['num_classes'],
                         abstract=True).state
  per_device = config.train.batch_size // devices
  side = sizes['image_side']
  return state, per_device * (side * side * 3 + 4)  # uint8 image + int32 label


def _check_train_step(config, report, devices, *, padded: bool):
  step = report['train_step']
  state, batch_bytes = _implied(config, devices)
  assert (step['devices'], step['batch_per_device']) == (devices, 64 // devices)
  assert step['argument_logical_bytes'] == _nbytes(state) + batch_bytes
  assert step['memory']['argument_bytes'] == step['argument_layout_bytes']
  if not padded:
    assert step['argument_layout_bytes'] == step['argument_logical_bytes']
  # The donated state comes back in place: its outputs alias their arguments.
  assert step['memory']['alias_bytes'] >= _nbytes(state['params'])
  # The gradient of every parameter is summed over the devices.
  assert step['collectives']['all-reduce']['count'] >= 1
  assert step['collectives']['all-reduce']['bytes'] >= _nbytes(state['params'])
  assert step['fits'] is True
  forward = report['eval_forward']
  assert (forward['devices'], forward['batch_per_device']) == (1, config.eval.batch_size)
  assert not any(c['count'] for c in forward['collectives'].values())


@needs_tpu
def test_a_tpu_slice_compiles_the_step_the_shardings_imply(tmp_path):
  config = _config(TPU)
  report = compile_mode.run_compile(config, str(tmp_path))
  assert json.loads((tmp_path / 'compile_report.json').read_text()) == json.loads(
      json.dumps(report))
  assert report['device_kind'] == 'TPU v5 lite'
  hlo = (tmp_path / 'compile_train_step.hlo.txt').read_text()
  assert compiled_lib.collectives(hlo) == report['train_step']['collectives']
  _check_train_step(config, report, 4, padded=True)
  step = report['train_step']
  assert step['flops'] > 0 and step['bytes_accessed'] > 0
  bound = step['roofline']
  assert bound['compute_seconds'] == pytest.approx(step['flops'] / 197e12)
  assert bound['images_per_second'] == pytest.approx(64 / bound['step_seconds'])


@needs_gpu
def test_a_gpu_box_compiles_the_step_the_shardings_imply(tmp_path):
  config = _config(GPU)
  report = compile_mode.run_compile(config, str(tmp_path))
  assert report['device_kind'] == 'NVIDIA H100 80GB HBM3'
  _check_train_step(config, report, 8, padded=False)
  assert report['train_step']['flops'] is None  # XLA's GPU compiler gives no cost analysis
  assert report['train_step']['usable_memory_bytes'] == int(80e9 * 0.75)


@needs_tpu
def test_a_step_too_large_for_a_tpu_is_one_error_line(tmp_path):
  """One v5e chip, 2^21 digits a step: SimCLR's similarities alone outgrow its 16 GB, and the TPU
  compiler refuses the program."""
  run = _cli(tmp_path / 'w', 'tpu:v5e:1x1', '--config.train.batch_size=2097152')
  assert run.returncode == 1, run.stderr[-2000:]
  last = run.stderr.strip().splitlines()[-1]
  # The compiler's own words differ between libtpu versions ("Ran out of memory in memory space
  # hbm", "... on HBM", "Allocation (size=...) would exceed memory (size=...)").
  assert last.startswith('error: the train step does not fit: '), last
  assert re.search(r'Ran out of memory (in memory space hbm|on HBM)|would exceed memory', last), last
  assert last.endswith('lower the batch size per device or the model size')


@needs_gpu
def test_a_step_too_large_for_a_gpu_is_one_error_line_and_a_report(tmp_path):
  """One H100, 2^17 digits a step: SimCLR's similarities need 275 GB; XLA's GPU compiler compiles
  it, and the report says it does not fit."""
  run = _cli(tmp_path / 'w', 'gpu:h100x1', '--config.train.batch_size=131072')
  assert run.returncode == 1, run.stderr[-2000:]
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith('error: the train step does not fit: ') and \
      'GiB usable on gpu:h100x1' in last, last
  report = json.loads((tmp_path / 'w' / 'compile_report.json').read_text())
  step = report['train_step']
  assert step['fits'] is False and step['memory']['peak_bytes'] > 80e9
  assert not any(c['count'] for c in step['collectives'].values())  # one device
  assert 'train step' in run.stdout and 'all-reduce' in run.stdout


def test_per_device_batch_share_is_checked():
  with pytest.raises(ValueError, match="does not divide over the target's 3 devices"):
    compile_mode._train_step(_config('gpu:h100x3'), _FakeMesh(3), compile_mode.data_sizes(
        _config('gpu:h100x3')))


class _FakeMesh:
  def __init__(self, size):
    self.size = size


def test_data_sizes_come_from_the_table():
  sizes = compile_mode.data_sizes(config_lib.load_config_file('configs/simclr.py:adc'))
  assert sizes == {'num_classes': 10, 'image_side': 32, 'epoch_images': 50_000}
  config = config_lib.load_config_file('configs/simclr.py:imagenet100')
  config.compile.num_examples = 1000
  assert compile_mode.data_sizes(config) == {'num_classes': 100, 'image_side': 224,
                                             'epoch_images': 1000}
  assert compile_mode.data_sizes(_config(TPU))['epoch_images'] == 1347  # digits' training split


# ------------------------------------------------------------------------------------------------
# The small-batch warning at the start of pretraining.

def test_a_small_batch_per_accelerator_is_warned_with_the_compile_estimate(tmp_path):
  assert targets.small_batch_warning(512, 4, 'tpu') is None  # 128 per chip
  assert targets.small_batch_warning(64, 8, 'cpu') is None  # CPU runs: not about chips
  message = targets.small_batch_warning(512, 64, 'tpu')
  assert message.startswith('8 images per device (train.batch_size 512 over 64 TPU devices) is '
                            'small') and 'raise train.batch_size to 4096 or more' in message
  report = {'target': 'tpu:v5e:8x8', 'train_step': {
      'batch': 512, 'devices': 64, 'roofline': {'compute_fraction': 0.108,
                                                'images_per_second': 233_000.4}}}
  assert targets.small_batch_warning(512, 64, 'tpu', report).endswith(
      '; compile report (tpu:v5e:8x8): compute 11% of the roofline step, about 233,000 images/s')
  # The pretraining run reads the workdir's report when it is for its batch and devices.
  from glf_jax.train import pretrain  # pylint: disable=g-import-not-at-top
  (tmp_path / 'compile_report.json').write_text(json.dumps(report))
  assert pretrain._compile_report(str(tmp_path), 512, 64) == report
  assert pretrain._compile_report(str(tmp_path), 512, 8) is None
  assert pretrain._compile_report(str(tmp_path / 'none'), 512, 64) is None
