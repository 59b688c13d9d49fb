#!/usr/bin/env bash
# create.sh: create the TPU (a queued resource by default: a single-host VM or a pod slice; spot,
# reserved or on-demand), then wait until it is ACTIVE (qr) / READY (vm).
#
# Idempotent: ACTIVE/READY already -> nothing to do; still being provisioned -> wait for it;
# SUSPENDED / FAILED (qr) or PREEMPTED / TERMINATED (vm) -> delete it first (a spot TPU cannot be
# restarted, only re-created), then create it again.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

summary="create.sh: create the TPU (queued resource or VM) and wait until it is usable.

  ZONE=us-east5-b TPU_NAME=my-v6e ACCELERATOR_TYPE=v6e-32 SPOT=1 bash tpu_scripts/create.sh"
uses=(GCLOUD PROJECT ZONE TPU_NAME QR_ID MODE ACCELERATOR_TYPE RUNTIME_VERSION SPOT RESERVED VALID_UNTIL
  POLL_SECONDS WAIT CREATE_TIMEOUT DRY_RUN)
no_args "$@"
init
check_capacity
runtime_version >/dev/null
check_gcloud

state=$(slice_state)
case $state in
  ACTIVE | READY)
    log "$TPU_NAME is already $state"
    exit 0 ;;
  SUSPENDED | FAILED | PREEMPTED | TERMINATED)
    log "$TPU_NAME is $state: deleting it before creating it again"
    delete_slice wait
    create_slice ;;
  MISSING)
    create_slice ;;
  *)
    log "$TPU_NAME is $state: waiting for it" ;;
esac

if [[ $WAIT == 0 ]]; then
  exit 0
fi
if [[ $DRY_RUN == 1 ]]; then
  slice_state >/dev/null
  log "DRY_RUN: would repeat that every $POLL_SECONDS s until ACTIVE / READY"
  exit 0
fi
start=$SECONDS
while :; do
  state=$(slice_state)
  case $state in
    ACTIVE | READY)
      log "$TPU_NAME is $state"
      exit 0 ;;
    FAILED | SUSPENDED | PREEMPTED | TERMINATED)
      die 3 "$TPU_NAME is $state (no capacity before VALID_UNTIL, a quota, or a preemption); see: $GCLOUD compute tpus queued-resources describe $(qr_id) --zone=$ZONE" ;;
  esac
  if ((CREATE_TIMEOUT > 0 && SECONDS - start >= CREATE_TIMEOUT)); then
    die 4 "$TPU_NAME is still $state after $CREATE_TIMEOUT s (it stays queued; delete.sh drops it)"
  fi
  log "$TPU_NAME is $state; next check in $POLL_SECONDS s"
  sleep "$POLL_SECONDS"
done
