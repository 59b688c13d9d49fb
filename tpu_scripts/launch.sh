#!/usr/bin/env bash
# launch.sh -- [TRAINER FLAGS]: start the same trainer command on every worker, detached from the
# ssh session:
#
#   python -m jaxcnn.train --distributed --data_dir=$DATA_DIR --workdir=$WORKDIR FLAGS...
#
# Every flag reaches the trainer as the same single argument it was here (spaces and quotes
# included). jax.distributed.initialize() finds the slice's hosts itself, so no coordinator flags.
# Output: ~/jaxcnn_run/train/log on each worker (status.sh shows its tail).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

summary="launch.sh -- [TRAINER FLAGS]: start python -m jaxcnn.train --distributed --data_dir=DATA_DIR
--workdir=WORKDIR FLAGS on every worker, detached (setsid nohup). A run directory that holds
checkpoints is resumed.

  WORKDIR=gs://b/runs/r50 DATA_DIR=gs://b/tensorflow_datasets ZONE=... TPU_NAME=... \\
    bash tpu_scripts/launch.sh -- --arch=resnet50 --dataset=imagenet2012 --batch_size=1024"
uses=(GCLOUD PROJECT ZONE TPU_NAME INTERNAL_IP STRICT_HOST_KEY_CHECKING WORKDIR DATA_DIR FORWARD_ENV DRY_RUN)
passthrough_args "$@"
init
check_train_args ${args[@]+"${args[@]}"}
check_gcloud
tpu_ssh all "$(remote_start train --data_dir="$DATA_DIR" --workdir="$WORKDIR" ${args[@]+"${args[@]}"})"
