#!/usr/bin/env bash
# N processes on this machine over jax.distributed, coordinator 127.0.0.1:$GLF_JAX_PORT (a pod in
# miniature, or one GPU box without SLURM). PLATFORM: cpu (each process its CPU devices) or gpu
# (process i sees GPU i alone: CUDA_VISIBLE_DEVICES=i). Each process reads its own shard of every
# global batch; process 0 writes logs and summary; process i prints to WORKDIR.process<i>.log.
#   launch/multiprocess.sh gpu 8 configs/simclr.py:imagenet100,adc runs/in100 [--config.x=y ...]
# (launch/multiprocess_cpu.sh and launch/gpu_box.sh call this.)
set -euo pipefail
platform=$1; n=$2; config=$3; workdir=$4; shift 4
case "$platform" in
  cpu | gpu) ;;
  *) echo "error: PLATFORM must be cpu or gpu, got '$platform'" >&2; exit 1 ;;
esac
port=${GLF_JAX_PORT:-12355}
pids=()
for ((i = 0; i < n; i++)); do
  if [ "$platform" = gpu ]; then
    devices=(CUDA_VISIBLE_DEVICES="$i" JAX_PLATFORMS=cuda)
  else
    devices=(JAX_PLATFORMS=cpu)
  fi
  env "${devices[@]}" python -m glf_jax.main --config "$config" --workdir "$workdir" \
    --config.distributed.coordinator_address="127.0.0.1:$port" \
    --config.distributed.num_processes="$n" --config.distributed.process_id="$i" "$@" \
    > "${workdir%/}.process$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
