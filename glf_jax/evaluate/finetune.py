"""Fine-tuning and transfer of a pretrained backbone to a labelled dataset (SPEC §5.4).

``finetune(backbone, train_source, test_source, num_classes=..., config=...)`` trains the backbone
and a new linear head with cross-entropy on augmented images (random resized crop + flip), SGD
with momentum and cosine decay, and reports test top-1/top-5 with the eval transform. With
``config.freeze_backbone`` the backbone stays fixed (BatchNorm in eval mode, no gradient): a
linear classifier on top of the pretrained encoder, trained through the augmentations. The
caller's module is never modified (the step works on ``nnx.split`` state, functionally).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
import ml_collections
import numpy as np
import optax

from glf_jax.data import augment, make_loader
from glf_jax.evaluate.features import extract_features
from glf_jax.evaluate.linear_probe import topk_accuracy


def default_finetune_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      epochs=30, batch_size=256, learning_rate=0.05, weight_decay=5e-4, image_size=32,
      mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.2435, 0.2616), crop_scale=(0.08, 1.0),
      freeze_backbone=False, log_every=50))


def _train_view_config(c) -> ml_collections.ConfigDict:
  view = augment.simclr_view_config(c.image_size)
  view.crop_scale = tuple(c.crop_scale)
  view.jitter_prob = view.grayscale_prob = view.blur_prob = 0.0
  view.mean, view.std = tuple(c.mean), tuple(c.std)
  return view


def finetune(backbone: nnx.Module, train_source, test_source, *, num_classes: int,
             config: ml_collections.ConfigDict, seed: int = 0) -> dict:
  """Fine-tunes a copy of ``backbone`` + a linear head; see the module docstring."""
  c = config
  if c.epochs < 1 or c.batch_size < 1 or c.learning_rate <= 0:
    raise ValueError(f'finetune needs epochs >= 1, batch_size >= 1 and learning_rate > 0; got '
                     f'{c.epochs}, {c.batch_size}, {c.learning_rate}')
  backbone = nnx.clone(backbone)
  backbone.eval() if c.freeze_backbone else backbone.train()
  train_graphdef, params, stats = nnx.split(backbone, nnx.Param, nnx.BatchStat)
  backbone.eval()
  eval_graphdef, _, _ = nnx.split(backbone, nnx.Param, nnx.BatchStat)
  head = {'kernel': jnp.zeros((backbone.feature_dim, num_classes)),
          'bias': jnp.zeros((num_classes,))}
  batch_size = min(int(c.batch_size), len(train_source))
  loader = make_loader(train_source, seed=seed, global_batch_size=batch_size,
                       num_epochs=int(c.epochs), process_index=0, process_count=1)
  total = loader.steps_per_epoch * int(c.epochs)
  tx = optax.chain(optax.add_decayed_weights(c.weight_decay, mask=lambda t: jax.tree.map(
      lambda p: p.ndim >= 2, t)), optax.sgd(optax.cosine_decay_schedule(c.learning_rate, total),
                                             momentum=0.9))
  trainable = {'head': head} if c.freeze_backbone else {'head': head, 'backbone': params}
  opt_state = tx.init(trainable)
  view = _train_view_config(c)

  @jax.jit
  def step(trainable, opt_state, stats, images, labels, key):
    x = augment.augment_batch(key, images, view)

    def loss_fn(trainable):
      bb_params = trainable.get('backbone', params)
      bb_stats = jax.tree.map(lambda s: s, stats)
      model = nnx.merge(train_graphdef, bb_params, bb_stats)
      h = model(x).astype(jnp.float32)
      if c.freeze_backbone:
        h = jax.lax.stop_gradient(h)
      logits = h @ trainable['head']['kernel'] + trainable['head']['bias']
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, nnx.state(model, nnx.BatchStat)
    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), opt_state, new_stats, loss

  key = jax.random.key(seed)
  losses = []
  for i, batch in enumerate(loader):
    trainable, opt_state, stats, loss = step(trainable, opt_state, stats, batch['image'],
                                             batch['label'], jax.random.fold_in(key, i))
    losses.append(loss)
  final_params = trainable.get('backbone', params)
  head = trainable['head']

  @jax.jit
  def logits_fn(images):
    x = augment.eval_transform(images, size=c.image_size, mean=tuple(c.mean), std=tuple(c.std))
    h = nnx.merge(eval_graphdef, final_params, stats)(x).astype(jnp.float32)
    return h @ head['kernel'] + head['bias']
  logits, labels = extract_features(logits_fn, test_source, batch_size=batch_size)
  return {'top1': topk_accuracy(logits, labels, 1), 'top5': topk_accuracy(logits, labels, 5),
          'train_loss': float(np.mean([float(l) for l in losses[-10:]])),
          'epochs': int(c.epochs), 'steps': len(losses)}
