#!/usr/bin/env bash
# prepare_data.sh -- [FLAGS]: prepare DATASET in DATA_DIR once, on worker 0 only:
#
#   python -m jaxcnn.prepare --dataset=$DATASET --data_dir=$DATA_DIR FLAGS...
#
# Run it before the first launch: N hosts finding an unprepared dataset would all build it at
# once. It runs detached on worker 0 (a long download survives a dropped ssh session), with
# JAX_PLATFORMS=cpu (it never holds the TPU); this script follows it until it ends and exits with
# its status. Run again while it is still going, it just follows it again.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

summary="prepare_data.sh -- [FLAGS]: run python -m jaxcnn.prepare --dataset=DATASET --data_dir=DATA_DIR
FLAGS once, on worker 0, and follow it until it ends.

  DATASET=imagenette DATA_DIR=gs://b/tensorflow_datasets ZONE=... TPU_NAME=... \\
    bash tpu_scripts/prepare_data.sh"
uses=(GCLOUD PROJECT ZONE TPU_NAME INTERNAL_IP STRICT_HOST_KEY_CHECKING DATA_DIR DATASET FORWARD_ENV
  POLL_SECONDS PROBE_FAILURES DRY_RUN)
passthrough_args "$@"
init
check_train_args ${args[@]+"${args[@]}"}
check_gcloud

rc=0
tpu_ssh 0 "$(remote_start prepare --dataset="$DATASET" --data_dir="$DATA_DIR" ${args[@]+"${args[@]}"})" || rc=$?
case $rc in
  0) ;;
  6) log "a prepare is already running on worker 0: following it" ;;
  *) exit "$rc" ;;
esac
if [[ $DRY_RUN == 1 ]]; then
  tpu_ssh 0 "$(remote_status prepare 1)"
  log "DRY_RUN: would repeat that every $POLL_SECONDS s until it ends"
  exit 0
fi
failures=0
last=''
while :; do
  sleep "$POLL_SECONDS"
  rc=0
  out=$(tpu_ssh 0 "$(remote_status prepare 1)") || rc=$?
  if ((rc != 0)); then
    failures=$((failures + 1))
    ((failures < PROBE_FAILURES)) || die "$rc" "worker 0 did not answer $failures times in a row"
    log "worker 0 did not answer (gcloud exit $rc); trying again"
    continue
  fi
  failures=0
  line=$(printf '%s\n' "$out" | grep -v '^JAXCNN_WORKER ' | tail -n 1 || true)
  [[ -z $line || $line == "$last" ]] || printf '%s\n' "$line"
  last=$line
  state=$(printf '%s\n' "$out" | awk '$1 == "JAXCNN_WORKER" { print $3; exit }')
  case $state in
    running) ;;
    exit=*)
      state=${state%,stopped}
      log "jaxcnn.prepare ended with status ${state#exit=}"
      exit "${state#exit=}" ;;
    *) die 7 "jaxcnn.prepare is not running on worker 0 and left no status ($state)" ;;
  esac
done
