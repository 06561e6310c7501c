"""One run of the CIFAR-10 studies (the ``:midi`` tier): a small ResNet on CIFAR-10 at 16 px.

    python -m glf_jax.main --config configs/studies/cifar10.py:simclr --workdir runs/c10_midi
    # the CIFAR-10 JPEG folder (ROOT/{train,test}/<class>/*.jpg) instead of TFDS's cifar10:
    python -m glf_jax.main --config configs/studies/cifar10.py:simclr --workdir runs/c10_midi \\
        --config.data.name=image_folder --config.data.root=ROOT

The argument: the objective (default ``simclr``), optionally ``smoke`` (the tests: a tiny
network, 3 steps of 64 on made data... see ``smoke`` below). Every study's ``:midi`` size starts
from this: CIFAR-10 (50,000 training / 10,000 test images) decoded at 16 px, ``resnet_small``
(four stages of one basic block, 16 filters: 128-d features) and a 512 → 128 projector, AdamW at
2e-3 (weight decay 1e-4, one warm-up epoch, no learning-rate scaling), batch 256,
``EPOCHS`` epochs, SimCLR's CIFAR views with crops of at least 20 % of the image. Evaluation:
a linear probe (100 epochs) and kNN (k = 20) on 10,000 training images (evenly spaced) and the
whole test set, beside the same network at its random initialisation. The size — resolution,
network, epochs — is the committed calibration's choice (``configs/studies/calibration.py``;
README, Studies).
"""

from glf_jax.config import base_config, smoke_run

EPOCHS = 8


def cifar10_run(objective='simclr', *, epochs=EPOCHS):
  """``objective`` on CIFAR-10 at 16 px with ``resnet_small`` for ``epochs`` epochs."""
  config = base_config(objective, 'cifar10', 'resnet_small')
  config.data.image_size = 16                 # the views and the evaluation follow
  config.model.projector_hidden_dim = 512
  config.model.projection_dim = 128
  if 'simclr' in config.objective:
    config.objective.simclr.temperature = 0.2
  config.optim.update(name='adamw', base_learning_rate=2e-3, lr_scaling='none',
                      weight_decay=1e-4, warmup_epochs=1.0)
  config.train.batch_size = 256
  config.train.epochs = epochs
  config.train.log_every = 50
  config.checkpoint.every_steps = 500
  for view in (config.augment.view1, config.augment.view2):
    view.crop_scale = (0.2, 1.0)
  config.eval.evaluators = ('linear', 'knn')
  config.eval.linear.epochs = 100
  config.eval.knn.k = (20,)
  config.eval.max_train_examples = 10_000
  config.eval.compare_random_init = True
  config.eval.embedding_examples = 0
  return config


def get_config(arg=None):
  words = [w.strip() for w in (arg or '').split(',') if w.strip()]
  objective = next((w for w in words if w != 'smoke'), 'simclr')
  if len(words) > 1 + ('smoke' in words):
    raise ValueError(f'configs/studies/cifar10.py takes an objective and optionally "smoke", got '
                     f'{arg!r}')
  config = cifar10_run(objective)
  if 'smoke' in words:
    smoke_run(config)
  return config
