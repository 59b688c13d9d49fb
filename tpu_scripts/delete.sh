#!/usr/bin/env bash
# delete.sh: delete the TPU: the queued resource with its nodes (MODE=qr, --force), or the VM.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

summary="delete.sh: delete the TPU (the queued resource and its nodes, or the VM). The run
directory in the bucket is kept.

  ZONE=us-east5-b TPU_NAME=my-v6e bash tpu_scripts/delete.sh"
uses=(GCLOUD PROJECT ZONE TPU_NAME QR_ID MODE ASYNC DRY_RUN)
no_args "$@"
init
check_gcloud
if [[ $ASYNC == 1 ]]; then
  delete_slice async
else
  delete_slice wait
fi
