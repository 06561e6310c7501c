#!/usr/bin/env bash
# A TPU VM pod slice: the same command on every host; jax.distributed finds the slice.
#   launch/tpu_pod.sh my-tpu us-central2-b configs/simclr.py:imagenet100,adc gs://BUCKET/runs/in100
# The workdir must be one place every host sees: a gs:// URL (pip install -e .[gcs] on the hosts;
# README, "Workdirs on Google Cloud Storage"), or a folder shared by all hosts (NFS, gcsfuse).
set -euo pipefail
tpu=$1; zone=$2; config=$3; workdir=$4; shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ~/glf_jax && python -m glf_jax.main --config $config --workdir $workdir \
   --config.distributed.auto_detect=True $*"
