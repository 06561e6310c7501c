"""Writes a glf_jax encoder's features of every training example, for ``prior.kind='features'``.

    python -m glf_jax.prior --encoder RUN --out prior.safetensors
    python -m glf_jax.prior --encoder RUN --out prior.safetensors \\
        --data image_folder --data-root ~/data/cifar10 --image-size 32

``RUN`` is a glf_jax workdir (or its checkpoint directory), or a torchvision ResNet-18/34/50
``.safetensors`` state dict (then ``--data`` is required, and the inputs are normalised with
ImageNet's statistics at the dataset's size). The rows follow the training source
of the run that will use the file (default: the encoder run's own ``config.data``; ``--data``
and the flags after it choose another), read in order, encoded under the encoder run's evaluation
transform (eval-mode BatchNorm), and written with that source's length and example-id fingerprint
(``glf_jax.prior.features_file``). Features of other models (CLIP, DINOv2): see that module's docstring.
"""

from __future__ import annotations

import argparse
import sys

from glf_jax.prior import features_file

FEATURES = ('h', 'z')


def _parse(argv):
  parser = argparse.ArgumentParser(prog='python -m glf_jax.prior',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--encoder', required=True,
                      help='workdir of a glf_jax run, or a torchvision ResNet .safetensors file')
  parser.add_argument('--out', required=True, help='output file, .safetensors or .npy')
  parser.add_argument('--feature', default='h', choices=FEATURES,
                      help="backbone features 'h' (default) or projections 'z'")
  parser.add_argument('--data', default=None, help="training source's name (default: the run's)")
  parser.add_argument('--data-root', default=None, help='image folder root (data.root)')
  parser.add_argument('--data-dir', default=None, help='TFDS data directory (data.data_dir)')
  parser.add_argument('--image-size', type=int, default=None, help='data.image_size')
  parser.add_argument('--split', default='train')
  parser.add_argument('--batch-size', type=int, default=256)
  parser.add_argument('--float16', action='store_true', help='store half-precision rows')
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = _parse(argv)
  features_file.check_path(args.out)  # fail before any work
  # Heavy imports after argument parsing, so --help and usage errors are instant.
  from flax import nnx  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from glf_jax.data import make_source, sources  # pylint: disable=g-import-not-at-top
  from glf_jax.evaluate import encoder as encoder_lib  # pylint: disable=g-import-not-at-top
  from glf_jax.evaluate import features as features_lib  # pylint: disable=g-import-not-at-top

  if encoder_lib.is_weights_file(args.encoder) and args.data is None:
    raise ValueError(f'--encoder {args.encoder} is a weights file, which has no run config: set '
                     '--data (the training source to encode, e.g. cifar10)')
  wanted = ml_collections.ConfigDict({'eval': {'data': {'name': args.data}}})
  run_config, eval_graphdef, params, batch_stats, step = encoder_lib.load_evaluated_encoder(
      wanted, args.encoder)
  data = run_config.data if args.data is None else sources.default_data_config(args.data)
  for key, value in (('root', args.data_root), ('data_dir', args.data_dir),
                     ('image_size', args.image_size)):
    if value is not None:
      data[key] = value
  source = make_source(data, args.split)
  transform = run_config.eval.transform
  graphdef, state = nnx.split(nnx.merge(eval_graphdef, params, batch_stats))
  encode_fn = features_lib.make_encode_fn(
      graphdef, state, image_size=int(transform.image_size), mean=transform.mean,
      std=transform.std, crop_fraction=float(transform.crop_fraction), feature=args.feature)
  print(f'encoding {len(source)} examples of {source.name}/{source.split} with the encoder of '
        f'{args.encoder} (step {step}, feature {args.feature!r})', flush=True)
  features, _ = features_lib.extract_features(encode_fn, source, batch_size=args.batch_size)
  if args.float16:
    features = features.astype(np.float16)
  features_file.write(args.out, features, source=source, description=(
      f'glf_jax {"torchvision" if step is None else run_config.objective.name} '
      f'{run_config.model.arch} from {args.encoder} step '
      f'{step}, feature {args.feature}, eval transform {dict(transform)}'))
  print(f'wrote {features.shape[0]} x {features.shape[1]} features to {args.out}', flush=True)
  return 0


if __name__ == '__main__':
  try:
    sys.exit(main())
  except (ValueError, FileNotFoundError, KeyError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
