#!/usr/bin/env bash
# One process on this machine (every local device: CPU, or all local GPUs).
#   launch/local.sh configs/simclr.py:adc runs/c10_simclr_adc [--config.x=y ...]
set -euo pipefail
config=$1; workdir=$2; shift 2
exec python -m glf_jax.main --config "$config" --workdir "$workdir" "$@"
