#!/usr/bin/env bash
# One GPU box without SLURM: one process per GPU over jax.distributed on localhost, process i on
# GPU i alone (launch/multiprocess.sh gpu). GPUS: how many (default: every GPU nvidia-smi lists).
#   launch/gpu_box.sh configs/simclr.py:imagenet100,adc runs/in100 [--config.x=y ...]
# Logs: runs/in100.process<i>.log; GLF_JAX_PORT: the coordinator's port (default 12355).
set -euo pipefail
gpus=${GPUS:-$(nvidia-smi --list-gpus | wc -l)}
if [ "$gpus" -lt 1 ]; then
  echo "error: no GPU found (nvidia-smi --list-gpus); set GPUS" >&2
  exit 1
fi
exec "$(dirname "$0")/multiprocess.sh" gpu "$gpus" "$@"
