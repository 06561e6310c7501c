"""SimSiam (Chen & He 2021) on CIFAR-10/100 or ImageNet-100, ResNet-18/50.

    python -m glf_jax.main --config configs/simsiam.py --workdir runs/c10_simsiam
    python -m glf_jax.main --config configs/simsiam.py:cifar100,adc --workdir runs/c100_simsiam_adc
    python -m glf_jax.main --config configs/simsiam.py:imagenet100,resnet50 --workdir runs/in100_simsiam

The argument (comma-separated, any order): the dataset — ``cifar10`` (default), ``cifar100``,
``imagenet100`` —, ``resnet50`` (default ResNet-18) and ``adc`` (adds ADC, ν = υ = 0.1, with the
pixel prior, as the ADC paper's runs). Every number of the run is set below; the rest (data,
checkpoints, evaluation) are ``glf_jax.config.base_config``'s defaults.

CIFAR: the paper's appendix D optimiser (SGD, 0.03 · batch / 256, weight decay 5e-4, 800 epochs);
ImageNet-100: the paper's ImageNet optimiser (SGD, 0.05 · batch / 256, weight decay 1e-4).
"""

from glf_jax.config import base_config, parse_config_arg


def get_config(arg=None):
  a = parse_config_arg(arg, choices=dict(dataset=('cifar10', 'cifar100', 'imagenet100'),
                                         arch=('resnet18', 'resnet50'), flags=('adc',)),
                       defaults=dict(dataset='cifar10', arch='resnet18'))
  imagenet = a['dataset'] == 'imagenet100'
  config = base_config('simsiam' + ('+adc' if a['adc'] else ''), a['dataset'], a['arch'])

  config.train.batch_size = 256 if imagenet else 512
  config.train.epochs = 400 if imagenet else 800
  config.optim.name = 'sgd'
  config.optim.base_learning_rate = 0.05 if imagenet else 0.03    # peak = this · batch / 256
  config.optim.lr_scaling = 'linear'
  config.optim.weight_decay = 1e-4 if imagenet else 5e-4
  config.optim.momentum = 0.9
  config.optim.warmup_epochs = 0.0
  config.model.projector_layers = 3
  config.model.projector_hidden_dim = 2048
  config.model.projection_dim = 2048
  config.model.projector_last_bn = True
  config.model.predictor_layers = 2
  config.model.predictor_hidden_dim = 512
  if a['adc']:
    config.objective.adc.nu = 0.1             # DCM weight
    config.objective.adc.upsilon = 0.1        # LPM weight
    config.objective.adc.sigma2 = 0.5
    config.objective.adc.rho = 5.0
    config.prior.kind = 'pixels'              # the paper's identity prior
  config.eval.transform.crop_fraction = 0.875 if imagenet else 1.0
  return config
