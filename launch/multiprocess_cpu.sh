#!/usr/bin/env bash
# N processes on this machine over jax.distributed (a pod in miniature; CPU devices).
# Each process reads its own shard of every global batch; process 0 writes logs and summary.
#   launch/multiprocess_cpu.sh 2 configs/quickstart.py /tmp/glf_mp [--config.x=y ...]
set -euo pipefail
n=$1; config=$2; workdir=$3; shift 3
port=${GLF_JAX_PORT:-12355}
pids=()
for ((i = 0; i < n; i++)); do
  JAX_PLATFORMS=cpu python -m glf_jax.main --config "$config" --workdir "$workdir" \
    --config.distributed.coordinator_address="127.0.0.1:$port" \
    --config.distributed.num_processes="$n" --config.distributed.process_id="$i" "$@" \
    > "${workdir%/}.process$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
