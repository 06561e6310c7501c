#!/usr/bin/env bash
# N processes on this machine over jax.distributed (a pod in miniature; CPU devices).
# Each process reads its own shard of every global batch; process 0 writes logs and summary.
#   launch/multiprocess_cpu.sh 2 configs/quickstart.py /tmp/glf_mp [--config.x=y ...]
set -euo pipefail
exec "$(dirname "$0")/multiprocess.sh" cpu "$@"
