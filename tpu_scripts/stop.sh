#!/usr/bin/env bash
# stop.sh: stop the run on every worker and wait until each has saved its checkpoint.
#
# SIGTERM goes to the pid in ~/jaxcnn_run/train/pid on each worker (never to processes found by
# name); the trainer then saves a checkpoint and exits 130. A later launch.sh or babysit.sh with
# the same WORKDIR resumes from it. A stop also tells babysit.sh not to restart the run.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

summary="stop.sh: SIGTERM the trainer on every worker (by pid file) and wait for its checkpoint
(exit status 130 on every worker).

  ZONE=us-east5-b TPU_NAME=my-v6e bash tpu_scripts/stop.sh"
uses=(GCLOUD PROJECT ZONE TPU_NAME INTERNAL_IP STRICT_HOST_KEY_CHECKING POLL_SECONDS STOP_TIMEOUT DRY_RUN)
no_args "$@"
init
check_gcloud

tpu_ssh all "$(remote_stop train)"
if [[ $DRY_RUN == 1 ]]; then
  tpu_ssh all "$(remote_status train 0)"
  log "DRY_RUN: would repeat that every $POLL_SECONDS s until no worker runs it (at most $STOP_TIMEOUT s)"
  exit 0
fi
start=$SECONDS
while :; do
  rc=0
  out=$(tpu_ssh all "$(remote_status train 0)") || rc=$?
  if ((rc == 0)); then
    verdict=$(printf '%s\n' "$out" | probe_verdict)
    [[ $verdict == running ]] || break
  else
    log "a worker did not answer (gcloud exit $rc)"
  fi
  ((SECONDS - start < STOP_TIMEOUT)) || die 4 "the run still runs (or a worker does not answer) after $STOP_TIMEOUT s"
  sleep "$POLL_SECONDS"
done
printf '%s\n' "$out" | grep '^JAXCNN_WORKER ' || true
# Saved = every worker exited 130 (stopped after a checkpoint) or 0 (had finished anyway).
bad=$(printf '%s\n' "$out" | awk '$1 == "JAXCNN_WORKER" { s = $3; sub(/,stopped$/, "", s); if (s != "exit=130" && s != "exit=0" && s != "none") print $2 " " s }')
if [[ -n $bad ]]; then
  die 7 "not every worker saved: $(echo "$bad" | tr '\n' ';')"
fi
log "stopped; the checkpoint is in the run directory (launch.sh or babysit.sh with the same WORKDIR resumes it)"
