#!/usr/bin/env bash
# babysit.sh -- [TRAINER FLAGS]: keep one run going until it finishes, across preemptions.
#
# Every POLL_SECONDS it reads the TPU's state and acts:
#   ACTIVE / READY      ask every worker for the run's state (worker_run.sh status) and
#     running             wait
#     fresh               (a new slice, or a worker that never ran it) setup.sh, then launch.sh
#     done                every worker exited 0: exit 0 (AUTODELETE=1 deletes the TPU first)
#     failed=1 / =2       non-finite loss / bad settings: a retry cannot fix it; exit 1 / 2
#     stopped             someone ran stop.sh: exit 130 (run babysit.sh again to continue)
#     retry=...           anything else (130 after a maintenance SIGTERM, a crash, -9): launch again
#     no answer           PROBE_FAILURES times in a row: the slice counts as broken, re-create it
#   SUSPENDED, FAILED, PREEMPTED, TERMINATED
#                       delete it (a spot TPU cannot be restarted), create it again, same settings
#   MISSING             create it (no delete); at the start this is not a restart
#   anything else       (WAITING_FOR_RESOURCES, PROVISIONING, CREATING, SUSPENDING, DELETING, ...)
#                       wait
# Every re-create and every relaunch counts against MAX_RESTARTS (exit 5 when spent). A gcloud
# failure while reading the state is logged and retried (a laptop's network comes and goes); a
# failed create of a TPU never seen yet exits with gcloud's status (bad settings, quota).
#
# Nothing needs resuming by hand: the new slice runs the same command with the same WORKDIR, and
# the trainer resumes from the newest checkpoint there ("Resuming <workdir> from step N.").
# Run it where it can stay up (tmux on a laptop, or a small always-on VM). Stopping babysit.sh
# (Ctrl-C) leaves the run itself going; run it again to go on watching.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

summary="babysit.sh -- [TRAINER FLAGS]: create / set up / launch as needed and keep the run going
through preemptions until it finishes (exit 0) or fails for a reason a retry cannot fix (1, 2).

  SPOT=1 ACCELERATOR_TYPE=v6e-32 ZONE=... TPU_NAME=... WORKDIR=gs://... DATA_DIR=gs://... \\
    bash tpu_scripts/babysit.sh -- --arch=resnet50 --dataset=imagenet2012 --epochs=90"
uses=(GCLOUD PROJECT ZONE TPU_NAME QR_ID MODE ACCELERATOR_TYPE RUNTIME_VERSION SPOT RESERVED VALID_UNTIL
  INTERNAL_IP STRICT_HOST_KEY_CHECKING WORKDIR DATA_DIR PYTHON_VERSION GIT_REF FORWARD_ENV
  POLL_SECONDS MAX_RESTARTS PROBE_FAILURES AUTODELETE DRY_RUN)
passthrough_args "$@"
init
check_capacity
runtime_version >/dev/null
check_train_args ${args[@]+"${args[@]}"}
check_ref
check_gcloud

start_command=$(remote_start train --data_dir="$DATA_DIR" --workdir="$WORKDIR" ${args[@]+"${args[@]}"})

if [[ $DRY_RUN == 1 ]]; then
  # One turn from nothing: what a first incarnation costs in gcloud calls.
  slice_state >/dev/null
  create_slice
  slice_state >/dev/null
  tpu_ssh all "$(remote_status train 0)"
  setup_workers
  tpu_ssh all "$start_command"
  log "DRY_RUN: then every $POLL_SECONDS s: the state, the workers' status, and the actions above"
  exit 0
fi

restarts=0     # re-creates + relaunches so far
seen=0         # the TPU has existed (or been created) since babysit.sh started
probe_failed=0 # ssh probes in a row without an answer

finish() {  # finish STATUS MESSAGE : AUTODELETE, then exit STATUS
  log "$2"
  if [[ $AUTODELETE == 1 ]]; then
    log "AUTODELETE=1: deleting $TPU_NAME"
    delete_slice wait || log "the delete failed (gcloud exit $?): delete it with delete.sh"
  fi
  exit "$1"
}

restart() {  # restart WHY : count one restart against the budget
  if ((restarts >= MAX_RESTARTS)); then
    finish 5 "$1, but the restart budget (MAX_RESTARTS=$MAX_RESTARTS) is spent"
  fi
  restarts=$((restarts + 1))
  log "$1: restart $restarts of at most $MAX_RESTARTS"
}

recreate() {  # recreate : delete (unless missing) and create the TPU again
  local state=$1 rc=0
  if [[ $state != MISSING ]]; then
    delete_slice wait || log "the delete failed (gcloud exit $?); trying the create anyway"
  fi
  create_slice || rc=$?
  if ((rc != 0)); then
    ((seen)) || die "$rc" "could not create $TPU_NAME (gcloud exit $rc): check the settings and quota"
    log "the create failed (gcloud exit $rc); next turn tries again"
    return 0
  fi
  seen=1
}

launch() {  # launch : start the trainer on every worker
  local rc=0
  tpu_ssh all "$start_command" || rc=$?
  ((rc == 0)) || restart "the launch failed on some worker (gcloud exit $rc)"
}

log "babysitting $TPU_NAME (MODE=$MODE, $ACCELERATOR_TYPE, WORKDIR=$WORKDIR)"
while :; do
  rc=0
  state=$(slice_state) || rc=$?
  if ((rc != 0)); then
    log "could not read the state of $TPU_NAME (gcloud exit $rc); trying again in $POLL_SECONDS s"
    sleep "$POLL_SECONDS"
    continue
  fi
  case $state in
    ACTIVE | READY)
      seen=1
      rc=0
      out=$(tpu_ssh all "$(remote_status train 0)") || rc=$?
      verdict=unknown
      ((rc != 0)) || verdict=$(printf '%s\n' "$out" | probe_verdict)
      if [[ $verdict == unknown ]]; then
        probe_failed=$((probe_failed + 1))
        log "$TPU_NAME is $state but its workers did not answer ($probe_failed of $PROBE_FAILURES)"
        if ((probe_failed >= PROBE_FAILURES)); then
          probe_failed=0
          restart "the workers of $TPU_NAME do not answer"
          recreate "$state"
        fi
      else
        probe_failed=0
        case $verdict in
          running) ;;
          fresh)
            log "$TPU_NAME is $state and the run is not there yet: setup and launch"
            rc=0
            setup_workers || rc=$?
            if ((rc == 0)); then
              launch
            else
              restart "setup failed (exit $rc)"
            fi ;;
          done) finish 0 "the run finished (every worker exited 0)" ;;
          stopped) finish 130 "the run was stopped with stop.sh; run babysit.sh again to continue it" ;;
          failed=*)
            rc=${verdict#failed=}
            finish "$rc" "the trainer exited $rc ($([[ $rc == 1 ]] && echo 'training failed: non-finite loss' || echo 'bad settings')): a retry would fail the same way; see status.sh" ;;
          retry=*)
            restart "the run ended with ${verdict#retry=} on some worker"
            launch ;;
        esac
      fi ;;
    SUSPENDED | FAILED | PREEMPTED | TERMINATED)
      restart "$TPU_NAME is $state"
      recreate "$state" ;;
    MISSING)
      if ((seen)); then
        restart "$TPU_NAME has disappeared"
      else
        log "$TPU_NAME does not exist: creating it"
      fi
      recreate MISSING ;;
    *)
      log "$TPU_NAME is $state: waiting" ;;
  esac
  sleep "$POLL_SECONDS"
done
