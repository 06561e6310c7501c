"""SwAV (Caron et al. 2020) on CIFAR-10/100 or ImageNet-100, ResNet-18/50.

    python -m glf_jax.main --config configs/swav.py --workdir runs/c10_swav
    python -m glf_jax.main --config configs/swav.py:cifar100,adc --workdir runs/c100_swav_adc
    python -m glf_jax.main --config configs/swav.py:imagenet100,resnet50 --workdir runs/in100_swav

The argument (comma-separated, any order): the dataset — ``cifar10`` (default), ``cifar100``,
``imagenet100`` —, ``resnet50`` (default ResNet-18) and ``adc`` (adds ADC, ν = υ = 0.1, with the
pixel prior, as the ADC paper's runs). Every number of the run is set below; the rest (data,
checkpoints, evaluation) are ``glf_jax.config.base_config``'s defaults.
"""

from glf_jax.config import base_config, parse_config_arg


def get_config(arg=None):
  a = parse_config_arg(arg, choices=dict(dataset=('cifar10', 'cifar100', 'imagenet100'),
                                         arch=('resnet18', 'resnet50'), flags=('adc',)),
                       defaults=dict(dataset='cifar10', arch='resnet18'))
  imagenet = a['dataset'] == 'imagenet100'
  config = base_config('swav' + ('+adc' if a['adc'] else ''), a['dataset'], a['arch'])

  config.train.batch_size = 256 if imagenet else 512
  config.train.epochs = 400 if imagenet else 1000
  config.optim.name = 'lars'
  config.optim.base_learning_rate = 0.6    # peak = 0.6 · batch / 256
  config.optim.lr_scaling = 'linear'
  config.optim.weight_decay = 1e-6
  config.optim.momentum = 0.9
  config.optim.lars_eta = 0.02
  config.optim.warmup_epochs = 10.0
  config.model.projector_layers = 2
  config.model.projector_hidden_dim = 2048
  config.model.projection_dim = 128
  config.model.num_prototypes = 3000
  config.objective.swav.temperature = 0.1
  config.objective.swav.epsilon = 0.05
  config.objective.swav.sinkhorn_iters = 3
  config.method.freeze_prototypes_epochs = 1.0
  if a['adc']:
    config.objective.adc.nu = 0.1             # DCM weight
    config.objective.adc.upsilon = 0.1        # LPM weight
    config.objective.adc.sigma2 = 0.5
    config.objective.adc.rho = 5.0
    config.prior.kind = 'pixels'              # the paper's identity prior
  config.eval.transform.crop_fraction = 0.875 if imagenet else 1.0
  return config
