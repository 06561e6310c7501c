"""Fine-tuning and transfer of a pretrained backbone to a labelled dataset (docs/maths.md §4, §5).

``finetune(backbone, train_source, test_source, num_classes=..., config=...)`` puts a fresh linear
head on a copy of ``backbone`` (:class:`LinearClassifier`), trains it with softmax cross-entropy on
lightly augmented images (random resized crop with ``config.crop_scale`` + horizontal flip; the
colour operations of the view recipe at probability 0), SGD with momentum 0.9 and cosine decay,
and reports test top-1 / top-5 under the deterministic ``augment.eval_transform``:

* ``freeze_backbone=False``: full fine-tuning (backbone and head; BatchNorm in train mode).
* ``freeze_backbone=True``: "load a pretrained encoder into a linear probe": only the head is
  trained, end-to-end through the augmentations; the backbone is fixed (no gradient, BatchNorm
  with its running statistics, which are not updated).

The caller's module is never modified: the classifier is built on ``nnx.clone(backbone)``, and
the jitted train step is a pure function of ``nnx.split`` states (state in, new state out).
The lower-level :func:`train_classifier` returns the trained classifier itself and
:func:`classifier_logits` evaluates one on a source.
"""

from __future__ import annotations

from typing import Any, Sequence

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from glf_jax.runtime import progress
from glf_jax.data import augment, make_loader
from glf_jax.evaluate import common
from glf_jax.evaluate.features import extract_features, make_encode_fn
from glf_jax.evaluate.linear_probe import check_int, make_optimizer, topk_accuracy
from glf_jax.losses import checks
from glf_jax.models import LinearHead, classification_loss

# The head's parameters (everything else of a LinearClassifier belongs to the backbone).
HEAD_PARAMS = nnx.All(nnx.Param, lambda path, _: path[0] == 'head')


def default_finetune_config() -> ml_collections.ConfigDict:
  """``config.eval.finetune``: fine-tuning settings (CIFAR defaults).

  Fields: ``epochs``, ``batch_size``, ``learning_rate`` (peak, cosine-decayed to 0; SGD momentum
  0.9), ``weight_decay`` (L2 on kernels, not on biases / BatchNorm), ``crop_scale`` (random
  resized crop area range: ``(0.08, 1)`` standard, ``(0.5, 1)`` lighter), ``flip_prob``
  (horizontal flips; 0 for data such as digits whose mirror images are other symbols),
  ``freeze_backbone`` (True: linear classifier on the frozen backbone), ``feature_norm`` (a
  BatchNorm without scale and bias on the features before the head, as in MAE's linear probe:
  the head then trains at one learning rate whatever the scale of the backbone's features) and
  ``log_every`` (steps between progress lines when the output is not a terminal; 0: every 30 s
  only, ``glf_jax.runtime.progress``). The image size and statistics are the
  evaluation transform's (``config.eval.transform``: the encoder's input).
  """
  return ml_collections.ConfigDict(dict(
      epochs=30, batch_size=256, learning_rate=0.05, weight_decay=5e-4, crop_scale=(0.08, 1.0),
      flip_prob=0.5, freeze_backbone=False, feature_norm=True, log_every=50))


def _features(output) -> jax.Array:
  """Backbone features as float32: the array itself, or ``'h'`` of an encoder's output dict."""
  if isinstance(output, dict):
    output = output['h']
  return jnp.asarray(output).astype(jnp.float32)


def _feature_dim(backbone: nnx.Module, image_size: int) -> int:
  if getattr(backbone, 'feature_dim', None):
    return int(backbone.feature_dim)
  graphdef, state = nnx.split(backbone)
  images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  shape = jax.eval_shape(lambda s, x: _features(nnx.merge(graphdef, s)(x)), state, images).shape
  return int(shape[-1])


class LinearClassifier(nnx.Module):
  """``logits = head(norm(backbone(x)))``: a backbone and a zero-initialised linear head.

  ``norm`` is an optional BatchNorm without scale and bias (He et al., 2022, "Masked
  Autoencoders Are Scalable Vision Learners", linear probing): it standardises the features with
  batch statistics in training and running averages in eval mode.

  Args:
    backbone: module mapping float images ``[b, H, W, 3]`` (NHWC) to features ``[b, d]`` (or an
      encoder returning ``{'h': ...}``); used as is (not copied).
    num_classes: outputs of the head.
    feature_dim: ``d`` (e.g. ``backbone.feature_dim``).
    feature_norm: put the BatchNorm ``norm`` before the head.
    rngs: ``nnx.Rngs`` (the head is zero-initialised, so it does not depend on them).
  """

  def __init__(self, backbone: nnx.Module, num_classes: int, *, feature_dim: int,
               feature_norm: bool = True, rngs: nnx.Rngs):
    self.backbone = backbone
    self.norm = (nnx.BatchNorm(feature_dim, use_scale=False, use_bias=False, momentum=0.9,
                               rngs=rngs) if feature_norm else None)
    self.head = LinearHead(feature_dim, num_classes)

  def __call__(self, x):
    h = _features(self.backbone(x))
    if self.norm is not None:
      h = self.norm(h)
    return self.head(h)


def _check_config(config: ml_collections.ConfigDict, num_classes: int) -> None:
  for name in ('epochs', 'batch_size', 'image_size'):
    check_int(f'config.{name}', config[name], 1)
  if len(config.mean) != 3 or len(config.std) != 3:
    raise ValueError(f'config.mean and config.std need 3 entries, got {config.mean}, '
                     f'{config.std}')
  checks.check_positive('config.learning_rate', config.learning_rate)
  checks.check_nonnegative('config.weight_decay', config.weight_decay)
  check_int('num_classes', num_classes, 2)


def train_view_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The training view: random resized crop (``config.crop_scale``) + flip, no colour ops."""
  view = augment.simclr_view_config(int(config.image_size))
  view.crop_scale = tuple(float(s) for s in config.crop_scale)
  view.flip_prob = float(config.get('flip_prob', 0.5))
  view.jitter_prob = view.grayscale_prob = view.blur_prob = view.solarize_prob = 0.0
  view.mean, view.std = tuple(config.mean), tuple(config.std)
  augment.validate_view_config(view)
  return view


def train_classifier(backbone: nnx.Module, train_source: Sequence[dict], *, num_classes: int,
                     config: ml_collections.ConfigDict,
                     seed: int = 0) -> tuple[LinearClassifier, dict[str, Any]]:
  """Trains a :class:`LinearClassifier` on a copy of ``backbone``; see the module docstring.

  Returns:
    ``(classifier, info)``: the trained classifier (in eval mode; its backbone is a copy, the
    caller's module is untouched) and ``{'train_loss', 'epochs', 'steps'}``, ``train_loss``
    the mean loss over the last epoch.
  """
  c = config
  _check_config(c, num_classes)
  view = train_view_config(c)
  batch_size = min(int(c.batch_size), len(train_source))
  loader = make_loader(train_source, seed=seed, global_batch_size=batch_size,
                       num_epochs=int(c.epochs), process_index=0, process_count=1)
  total_steps = loader.steps_per_epoch * int(c.epochs)

  classifier = LinearClassifier(nnx.clone(backbone), num_classes, rngs=nnx.Rngs(seed),
                                feature_dim=_feature_dim(backbone, int(c.image_size)),
                                feature_norm=bool(c.get('feature_norm', True)))
  classifier.train()
  if c.freeze_backbone:
    classifier.backbone.eval()  # its BatchNorms use (and keep) their running statistics
  train_graphdef, head, body, rest = nnx.split(classifier, HEAD_PARAMS, nnx.Param, ...)
  trainable = {'head': head} if c.freeze_backbone else {'head': head, 'backbone': body}
  frozen = body if c.freeze_backbone else None
  # SGD (momentum 0.9), cosine decay, L2 on kernels only: the linear probe's optimiser.
  tx = make_optimizer('sgd', float(c.learning_rate), float(c.weight_decay), total_steps)
  opt_state = tx.init(trainable)

  @jax.jit
  def train_step(trainable, frozen, rest, opt_state, images, labels, key):
    views = augment.augment_batch(key, images, view)

    def loss_fn(trainable):
      body = trainable['backbone'] if frozen is None else frozen
      # Fresh Variable objects at the current trace level (inside grad): NNX refuses to mutate
      # BatchStats created at an outer level.
      fresh_rest = jax.tree.map(lambda x: x, rest)
      model = nnx.merge(train_graphdef, trainable['head'], body, fresh_rest)
      loss, _ = classification_loss(model(views), labels)
      return loss, nnx.split(model, HEAD_PARAMS, nnx.Param, ...)[3]

    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), rest, opt_state, loss

  key = jax.random.key(seed)
  losses = []
  with progress.Progress(total_steps, desc='finetune step', unit='img', scale=batch_size,
                         every=int(c.log_every)) as bar:

    def show(done):  # a step's loss is read one step late: dispatch stays asynchronous
      loss = losses[done - 1]
      if bar.enabled:
        jax.block_until_ready(loss)
      bar.update(done, head=f'epoch {done / loader.steps_per_epoch:.2f}',
                 tail=lambda: f'loss {float(loss):.4f}')

    for step, batch in enumerate(loader):
      trainable, rest, opt_state, loss = train_step(
          trainable, frozen, rest, opt_state, batch['image'], batch['label'],
          jax.random.fold_in(key, step))
      losses.append(loss)
      if step:
        show(step)
    if losses:
      show(len(losses))
  last_epoch = np.asarray(jax.device_get(losses[-loader.steps_per_epoch:]), np.float64)
  if not np.all(np.isfinite(last_epoch)):
    logging.warning('finetune: non-finite training loss in the last epoch')

  body = trainable['backbone'] if frozen is None else frozen
  classifier = nnx.merge(train_graphdef, trainable['head'], body, rest)
  classifier.eval()
  return classifier, {'train_loss': float(np.mean(last_epoch)), 'epochs': int(c.epochs),
                      'steps': len(losses)}


def classifier_logits(classifier: nnx.Module, source: Sequence[dict], *, image_size: int,
                      mean: Sequence[float], std: Sequence[float],
                      batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
  """``(logits [n, classes], labels [n])`` of ``source`` under ``augment.eval_transform``.

  The classifier runs in eval mode on a merged copy (the caller's module keeps its mode).
  """
  graphdef, state = nnx.split(classifier)
  encode = make_encode_fn(graphdef, state, image_size=int(image_size), mean=mean, std=std)
  return extract_features(encode, source, batch_size=min(int(batch_size), len(source)),
                          desc='classifier logits')


def finetune(backbone: nnx.Module, train_source: Sequence[dict], test_source: Sequence[dict], *,
             num_classes: int, config: ml_collections.ConfigDict, seed: int = 0) -> dict:
  """Fine-tunes (or linear-probes, ``config.freeze_backbone``) a copy of ``backbone``.

  Args:
    backbone: NNX module, float images NHWC -> features ``[b, d]`` (e.g. ``encoder.backbone``).
      Not modified.
    train_source, test_source: random-access sources (``source[i] -> {'image', 'label'}``) with
      labels in ``[0, num_classes)``.
    num_classes: classes of the new head (>= 2).
    config: :func:`default_finetune_config` plus the transform's ``image_size``, ``mean``,
      ``std``.
    seed: data order, augmentation and head seed.

  Returns:
    ``{'top1', 'top5'}`` test accuracies, ``'train_loss'`` (mean over the last epoch),
    ``'epochs'`` and ``'steps'``.
  """
  classifier, info = train_classifier(backbone, train_source, num_classes=num_classes,
                                      config=config, seed=seed)
  logits, labels = classifier_logits(classifier, test_source, image_size=config.image_size,
                                     mean=config.mean, std=config.std,
                                     batch_size=config.batch_size)
  return {'top1': topk_accuracy(logits, labels, 1), 'top5': topk_accuracy(logits, labels, 5),
          **info}


def finetune_evaluator(context: common.Context, settings) -> dict:
  """``finetune/top1``, ``/top5``, ``/train_loss``, ``/epochs``, ``/steps`` of a fine-tuned copy
  of the backbone on the evaluation data (transfer when that is another dataset)."""
  config = ml_collections.ConfigDict(settings.to_dict())
  t = context.transform
  config.image_size, config.mean, config.std = int(t['image_size']), tuple(t['mean']), tuple(
      t['std'])
  results = finetune(context.encoder().backbone, context.train_source, context.test_source,
                     num_classes=context.num_classes, config=config, seed=context.seed)
  return {f'finetune/{key}': value for key, value in results.items()}


EVALUATOR = common.Evaluator('finetune', finetune_evaluator, default_finetune_config)
