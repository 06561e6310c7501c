"""``torchvision``: a torchvision ResNet-18/34/50 ``state_dict`` saved as ``.safetensors``
(``prior.path``); the architecture comes from the file, ``prior.feature`` must be ``'h'`` (no
projector), and the views are re-normalised from the run's mean/std to ImageNet's."""

from glf_jax.models import torchvision as tv
from glf_jax.prior.base import Prior, encoder_prior


def _build(config, source):
  del source
  if config.prior.feature != 'h':
    raise ValueError(f"prior.feature must be 'h' for prior.kind='torchvision' (the file holds a "
                     f"backbone, no projector), got {config.prior.feature!r}")
  tv_apply, tv_state = encoder_prior(
      tv.encoder_module_from_torchvision(tv.load_state_dict(config.prior.path)), 'h')
  to_imagenet = tv.imagenet_renormaliser(config.augment.view1, config.augment.view2)

  def torchvision_prior(prior_state, views, batch=None):
    del batch
    return tv_apply(prior_state, to_imagenet(views))
  return torchvision_prior, tv_state


PRIOR = Prior('torchvision', _build, needs_path=True)
