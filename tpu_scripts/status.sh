#!/usr/bin/env bash
# status.sh: the TPU's state, its node's state and health, and on every worker the run's state
# (running / exit=N / none) with the tail of its log.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

summary="status.sh: state and health of the TPU, and the run's state and log tail on every worker.

  ZONE=us-east5-b TPU_NAME=my-v6e TAIL_LINES=5 bash tpu_scripts/status.sh"
uses=(GCLOUD PROJECT ZONE TPU_NAME QR_ID MODE INTERNAL_IP STRICT_HOST_KEY_CHECKING TAIL_LINES DRY_RUN)
no_args "$@"
init
check_gcloud

state=$(slice_state)
if [[ $DRY_RUN == 1 ]]; then
  :
elif [[ $MODE == qr ]]; then
  echo "queued resource $(qr_id): $state"
else
  echo "TPU VM $TPU_NAME: $state"
fi
if [[ $DRY_RUN == 0 && $state != ACTIVE && $state != READY ]]; then
  exit 0
fi
set_loc
# health: HEALTHY, TIMEOUT, UNHEALTHY_MAINTENANCE, ... (Node.health in the TPU v2 API).
node=$(gc compute tpus tpu-vm describe "$TPU_NAME" "${loc[@]}" '--format=value(state,health,healthDescription)' --quiet)
[[ $DRY_RUN == 1 ]] || echo "node $TPU_NAME: $node"
tpu_ssh all "$(remote_status train "$TAIL_LINES")"
