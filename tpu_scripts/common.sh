#!/usr/bin/env bash
# common.sh: sourced by the tpu_scripts entry points (create, setup, prepare_data, launch, status,
# stop, delete, babysit); run it with --help for the table of every setting.
#
# Conventions (they keep the scripts checkable and the --help honest):
# - Settings are environment variables in UPPER_CASE; every other variable is lower_case.
# - Each entry point lists the settings it reads in `uses=(...)` and calls `init`, which gives
#   those (and only those) their defaults and validates them before any gcloud call. Under
#   `set -u`, reading a setting that a script did not list is an error, and the tests check that
#   every UPPER_CASE name a script (or a function it calls) reads appears in its --help.
# - Every gcloud call goes through `gc`, which prints the command line instead under DRY_RUN=1.
#   The printed words are quoted for a POSIX shell, so a printed line can be pasted back.
# - Remote commands are plain POSIX sh (they are run by the worker's login shell, through sshd),
#   with every argument single-quoted (see `q`); the worker side lives in worker_run.sh and
#   worker_setup.sh, which come from the same commit as the code on the worker.
# - Written for bash >= 3.2 (macOS's /bin/bash): no associative arrays, no mapfile, no ${x@Q};
#   empty arrays are expanded as ${a[@]+"${a[@]}"}. Tested here with bash 5.2 only.

tpu_scripts_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# fd 3 is the terminal side of stdout: DRY_RUN lines go there, so that a gcloud call whose output
# is captured with $(...) still shows its line.
exec 3>&1

# ---------------------------------------------------------------------------------------------
# The settings: NAME|DEFAULT|meaning. A derived default (QR_ID, RUNTIME_VERSION) is empty here and
# computed by the function that needs it.
_settings_table() {
  cat <<'EOF'
GCLOUD|gcloud|the gcloud command (the tests point it at a fake)
PROJECT||Google Cloud project; empty: gcloud's core/project property
ZONE||required: zone of the TPU, e.g. us-east5-b
TPU_NAME||required: name of the TPU VM or slice (lowercase letters, digits and '-')
QR_ID||queued-resource id (MODE=qr); empty: TPU_NAME
MODE|qr|qr: create through a queued resource (single host or pod slice); vm: plain tpu-vm create
ACCELERATOR_TYPE|v6e-8|v6e-8 (1 host), v6e-32 (8 hosts), v5litepod-8, v5litepod-16, v5p-8, v4-32, ...
RUNTIME_VERSION||TPU software version; empty: v6e-* v2-alpha-tpuv6e, v5litepod-* v2-alpha-tpuv5-lite, v5p-* v2-alpha-tpuv5, v2/v3/v4-* tpu-ubuntu2204-base
SPOT|0|1: spot capacity (cheaper, preemptible; babysit.sh re-creates it)
RESERVED|0|1: your project's reserved capacity
VALID_UNTIL||MODE=qr: drop the request if not provisioned within this gcloud duration (e.g. 6h)
INTERNAL_IP|0|1: ssh/scp over internal IPs (from a VM in the same VPC)
STRICT_HOST_KEY_CHECKING||ssh/scp host-key checking: yes, no or ask; empty: gcloud's default
WORKDIR||required: the run directory, gs://BUCKET/runs/NAME (shared by all workers)
DATA_DIR||required: the TFDS data dir, gs://BUCKET/tensorflow_datasets
DATASET||required: the dataset to prepare, e.g. imagenette or imagenet2012
PYTHON_VERSION|3.12|Python of the workers' venv (made by uv, which downloads it if needed)
GIT_REF|HEAD|the commit that setup.sh ships (git archive: committed files only)
FORWARD_ENV|LIBTPU_INIT_ARGS TPU_STDERR_LOG_LEVEL TPU_MIN_LOG_LEVEL TPU_VMODULE XLA_FLAGS|names of local environment variables passed on to every worker's trainer when they are set
POLL_SECONDS|30|seconds between two state checks
WAIT|1|1: wait until the TPU is ACTIVE (qr) / READY (vm); 0: return after the create call
CREATE_TIMEOUT|0|seconds to wait for ACTIVE/READY before giving up (exit 4); 0: no limit
STOP_TIMEOUT|600|seconds to wait for every worker to save its checkpoint and exit (exit 4 after)
MAX_RESTARTS|20|re-creates and relaunches allowed, all together, before giving up (exit 5)
PROBE_FAILURES|5|failed ssh probes in a row after which babysit.sh re-creates an ACTIVE/READY slice (prepare_data.sh gives up)
AUTODELETE|0|1: delete the TPU when the run has ended (finished, failed or restart budget spent)
TAIL_LINES|20|lines of each worker's log (~/jaxcnn_run/train/log) to show
ASYNC|0|1: return without waiting for the deletion to finish
DRY_RUN|0|1: print the gcloud command lines instead of running them (calls nothing)
EOF
}

# The exit statuses shared by every script (each --help shows the ones that script can return).
exit_codes_text() {
  cat <<'EOF'
Exit status:
  0    done
  1    babysit.sh: the training failed (non-finite loss): a retry would fail again
  2    bad settings (one line on stderr, before any gcloud call), or the trainer's own exit 2
  3    create.sh: the queued resource / VM ended FAILED, SUSPENDED or PREEMPTED while waiting
  4    timed out (CREATE_TIMEOUT, STOP_TIMEOUT, or a worker that did not start)
  5    babysit.sh: MAX_RESTARTS spent
  6    refused: a run (or a prepare) is already alive on a worker
  7    stop.sh / prepare_data.sh: a worker's process ended without saving (status printed)
  130  babysit.sh: the run was stopped with stop.sh (run babysit.sh again to continue it)
  other: gcloud's own exit status (prepare_data.sh: that of `python -m jaxcnn.prepare`)
EOF
}

# ---------------------------------------------------------------------------------------------
# Messages.
script_name=$(basename "$0")

log() {  # log MESSAGE... : a time-stamped line on stderr
  printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "$script_name" "$*" >&2
}

die() {  # die STATUS MESSAGE... : one line on stderr, then exit STATUS
  local status=$1
  shift
  printf '%s: %s\n' "$script_name" "$*" >&2
  exit "$status"
}

# ---------------------------------------------------------------------------------------------
# Quoting. Single quotes are the one quoting every POSIX shell (sh, dash, bash, zsh) reads the same
# way; printf %q may emit bash-only $'...' forms. Words made only of safe characters stay bare,
# which keeps the printed lines readable.
q() {  # q WORD : WORD quoted for a POSIX shell
  local s=$1 r="'\\''"
  if [[ -n $s && $s != *[!A-Za-z0-9_@%+=:,./-]* ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/$r}"
  fi
}

qwords() {  # qwords WORD... : the words quoted and joined by spaces
  local out='' w
  for w in "$@"; do
    out+="${out:+ }$(q "$w")"
  done
  printf '%s' "$out"
}

# ---------------------------------------------------------------------------------------------
# Settings: defaults, help and validation.
uses=()

_load_table() {
  local name def doc
  while IFS='|' read -r name def doc; do
    printf -v "_def_$name" '%s' "$def"
    printf -v "_doc_$name" '%s' "$doc"
  done < <(_settings_table)
}
_load_table

usage() {  # usage : print $summary, the settings in $uses and the exit statuses
  local name def doc
  printf '%s\n\nSettings (environment variables) read by %s:\n' "$summary" "$script_name"
  for name in ${uses[@]+"${uses[@]}"}; do
    def=_def_$name
    doc=_doc_$name
    printf '  %-25s %s%s\n' "$name" "${!doc}" "${!def:+ (default: ${!def})}"
  done
  printf '\n%s\n' "$(exit_codes_text)"
}

no_args() {  # no_args "$@" : --help, or nothing
  case ${1-} in
    -h | --help) usage; exit 0 ;;
    '') ;;
    *) die 2 "takes no arguments (settings are environment variables; see --help): got '$1'" ;;
  esac
}

# passthrough_args "$@" : --help, or [--] ARGS...; sets the array `args`
passthrough_args() {
  case ${1-} in
    -h | --help) usage; exit 0 ;;
    --) shift ;;
  esac
  # shellcheck disable=SC2034  # read by the script that sourced this file
  args=("$@")
}

_has() {  # _has NAME : whether NAME is in $uses
  local n
  for n in ${uses[@]+"${uses[@]}"}; do
    [[ $n == "$1" ]] && return 0
  done
  return 1
}

_check() {  # _check NAME VALUE : exit 2 unless VALUE is valid for setting NAME
  local name=$1 v=$2
  case $name in
    ZONE | TPU_NAME | WORKDIR | DATA_DIR | DATASET)
      [[ -n $v ]] || die 2 "$name is not set (see --help)" ;;
  esac
  case $name in
    ZONE) [[ $v =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] || die 2 "ZONE='$v' is not a zone name (like us-east5-b)" ;;
    TPU_NAME | QR_ID)
      [[ -z $v || $v =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] ||
        die 2 "$name='$v' is not a valid name (lowercase letters, digits and '-', starting with a letter)" ;;
    PROJECT) [[ -z $v || $v =~ ^[a-z0-9][-a-z0-9.:]*$ ]] || die 2 "PROJECT='$v' is not a project id" ;;
    MODE) [[ $v == qr || $v == vm ]] || die 2 "MODE='$v': use qr or vm" ;;
    ACCELERATOR_TYPE)
      [[ $v =~ ^v[0-9][a-z0-9]*-[0-9]+$ ]] || die 2 "ACCELERATOR_TYPE='$v' is not an accelerator type (like v6e-8)" ;;
    RUNTIME_VERSION) [[ -z $v || $v =~ ^[A-Za-z0-9._-]+$ ]] || die 2 "RUNTIME_VERSION='$v' is not a version name" ;;
    VALID_UNTIL) [[ -z $v || $v =~ ^[A-Za-z0-9.]+$ ]] || die 2 "VALID_UNTIL='$v' is not a gcloud duration (like 6h)" ;;
    WORKDIR | DATA_DIR)
      # Every worker must see the same directory: a local path would be a different folder on each
      # host (and would be lost with the VM), so only a bucket URL is accepted.
      [[ $v =~ ^gs://[a-z0-9]([-a-z0-9_.]*[a-z0-9])?(/.*)?$ ]] ||
        die 2 "$name='$v' must be a gs://BUCKET/... URL: every worker reads and writes it, and a local path would be a different folder on each host" ;;
    DATASET) [[ $v =~ ^[a-z0-9_/:.-]+$ ]] || die 2 "DATASET='$v' is not a dataset name" ;;
    SPOT | RESERVED | INTERNAL_IP | WAIT | AUTODELETE | ASYNC | DRY_RUN)
      [[ $v == 0 || $v == 1 ]] || die 2 "$name='$v': use 0 or 1" ;;
    POLL_SECONDS | CREATE_TIMEOUT | STOP_TIMEOUT | MAX_RESTARTS | PROBE_FAILURES | TAIL_LINES)
      [[ $v =~ ^[0-9]+$ ]] || die 2 "$name='$v' is not a whole number" ;;
    STRICT_HOST_KEY_CHECKING)
      [[ -z $v || $v == yes || $v == no || $v == ask ]] || die 2 "STRICT_HOST_KEY_CHECKING='$v': use yes, no or ask" ;;
    PYTHON_VERSION) [[ $v =~ ^3\.[0-9]+$ ]] || die 2 "PYTHON_VERSION='$v' is not like 3.12" ;;
    FORWARD_ENV) [[ $v =~ ^[A-Za-z0-9_\ ]*$ ]] || die 2 "FORWARD_ENV='$v' must be variable names separated by spaces" ;;
    GIT_REF) [[ -n $v ]] || die 2 "GIT_REF is empty" ;;
  esac
}

init() {  # init : defaults and validation of the settings in $uses (nothing else is read)
  local name def
  for name in ${uses[@]+"${uses[@]}"}; do
    def=_def_$name
    [[ -n ${!name+x} ]] || printf -v "$name" '%s' "${!def}"
    _check "$name" "${!name}"
  done
}

check_gcloud() {  # check_gcloud : the gcloud command exists (not needed for DRY_RUN=1)
  [[ $DRY_RUN == 1 ]] || command -v "$GCLOUD" >/dev/null ||
    die 2 "GCLOUD='$GCLOUD' is not a command (install the Google Cloud CLI, or set GCLOUD)"
}

check_capacity() {  # check_capacity : SPOT / RESERVED / VALID_UNTIL agree with each other and MODE
  [[ $SPOT == 1 && $RESERVED == 1 ]] && die 2 "SPOT=1 and RESERVED=1: choose one"
  [[ -n $VALID_UNTIL && $MODE == vm ]] && die 2 "VALID_UNTIL applies to queued resources only (MODE=qr)"
  return 0
}

qr_id() {  # qr_id : the queued-resource id
  printf '%s' "${QR_ID:-$TPU_NAME}"
}

runtime_version() {  # runtime_version : RUNTIME_VERSION, or the image for ACCELERATOR_TYPE
  # From the table in cloud.google.com/tpu/docs/runtimes ("TPU software versions", PyTorch and
  # JAX): Trillium v6e, v5p, v5e, then "v4 and older". Newer chips have no default here on purpose:
  # guessing an image name would fail only at create time, after the queue wait.
  if [[ -n $RUNTIME_VERSION ]]; then
    printf '%s' "$RUNTIME_VERSION"
    return
  fi
  case $ACCELERATOR_TYPE in
    v6e-*) printf '%s' v2-alpha-tpuv6e ;;
    v5litepod-*) printf '%s' v2-alpha-tpuv5-lite ;;
    v5p-*) printf '%s' v2-alpha-tpuv5 ;;
    v2-* | v3-* | v4-*) printf '%s' tpu-ubuntu2204-base ;;
    *) die 2 "no default runtime for ACCELERATOR_TYPE=$ACCELERATOR_TYPE: set RUNTIME_VERSION (see cloud.google.com/tpu/docs/runtimes)" ;;
  esac
}

check_train_args() {  # check_train_args ARGS... : flags that tpu_scripts sets itself are refused
  local a
  for a in "$@"; do
    case $a in
      -workdir | -workdir=* | --workdir | --workdir=* | -data_dir | -data_dir=* | --data_dir | --data_dir=*)
        die 2 "'$a': set WORKDIR / DATA_DIR instead (they are checked to be gs:// URLs)" ;;
      --distributed | --nodistributed | --coordinator_address* | --num_processes* | --process_id*)
        die 2 "'$a': tpu_scripts runs every worker with --distributed and lets JAX detect the slice" ;;
    esac
  done
}

# ---------------------------------------------------------------------------------------------
# gcloud.
qline() {  # qline WORD... : print the words as one shell line
  printf '%s\n' "$(qwords "$@")"
}

gc() {  # gc ARGS... : run "$GCLOUD" ARGS..., or print the line (DRY_RUN=1)
  if [[ $DRY_RUN == 1 ]]; then
    qline "$GCLOUD" "$@" >&3
    return 0
  fi
  "$GCLOUD" "$@"
}

loc=()
set_loc() {  # set_loc : the array `loc` = --zone (and --project)
  loc=(--zone="$ZONE")
  [[ -z $PROJECT ]] || loc+=(--project="$PROJECT")
}

slice_state() {  # slice_state : print the state of the TPU, or MISSING; non-zero if gcloud failed
  # `list` rather than `describe`: a failed describe cannot tell "not found" from "network down"
  # or "credentials expired", and babysit.sh must not re-create a slice on a network blip. An empty
  # list with exit 0 is a clear MISSING. The format paths are those of gcloud's own list formats
  # (name.basename(), state.state for queued resources; state for nodes).
  local out name state want rc=0
  set_loc
  if [[ $MODE == qr ]]; then
    want=$(qr_id)
    out=$(gc compute tpus queued-resources list "${loc[@]}" \
      '--format=value(name.basename(),state.state)' --quiet) || rc=$?
  else
    want=$TPU_NAME
    out=$(gc compute tpus tpu-vm list "${loc[@]}" '--format=value(name.basename(),state)' --quiet) || rc=$?
  fi
  ((rc == 0)) || return "$rc"
  while IFS=$'\t' read -r name state; do
    if [[ $name == "$want" ]]; then
      printf '%s\n' "${state:-UNKNOWN}"
      return 0
    fi
  done <<<"$out"
  printf '%s\n' MISSING
}

create_slice() {  # create_slice : the create call (queued resource or VM)
  local runtime tier=()
  runtime=$(runtime_version) || return 2
  [[ $SPOT == 1 ]] && tier=(--spot)
  [[ $RESERVED == 1 ]] && tier=(--reserved)
  set_loc
  if [[ $MODE == qr ]]; then
    [[ -z $VALID_UNTIL ]] || tier+=(--valid-until-duration="$VALID_UNTIL")
    gc compute tpus queued-resources create "$(qr_id)" "${loc[@]}" --node-id="$TPU_NAME" \
      --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$runtime" ${tier[@]+"${tier[@]}"} --quiet
  else
    gc compute tpus tpu-vm create "$TPU_NAME" "${loc[@]}" --accelerator-type="$ACCELERATOR_TYPE" \
      --version="$runtime" ${tier[@]+"${tier[@]}"} --quiet
  fi
}

delete_slice() {  # delete_slice wait|async : delete the queued resource (with its nodes) or the VM
  local extra=()
  [[ $1 == wait ]] || extra=(--async)
  set_loc
  if [[ $MODE == qr ]]; then
    # --force: "any nodes in this queued resource will also be deleted" (gcloud's flag help).
    gc compute tpus queued-resources delete "$(qr_id)" "${loc[@]}" --force ${extra[@]+"${extra[@]}"} --quiet
  else
    gc compute tpus tpu-vm delete "$TPU_NAME" "${loc[@]}" ${extra[@]+"${extra[@]}"} --quiet
  fi
}

_ssh_flags() {  # _ssh_flags : the array `ssh_flags` for tpu-vm ssh / scp
  ssh_flags=()
  [[ $INTERNAL_IP == 1 ]] && ssh_flags+=(--internal-ip)
  [[ -z $STRICT_HOST_KEY_CHECKING ]] || ssh_flags+=(--strict-host-key-checking="$STRICT_HOST_KEY_CHECKING")
  return 0
}

tpu_ssh() {  # tpu_ssh WORKER COMMAND : run COMMAND on WORKER (0, 1, ... or all: concurrently)
  # With --worker=all, gcloud runs the command on every worker in parallel and exits with the first
  # non-zero remote status (SDK: WaitForBatchCompletion), so a refusal (6) on any worker shows.
  local ssh_flags
  _ssh_flags
  set_loc
  gc compute tpus tpu-vm ssh "$TPU_NAME" "${loc[@]}" --worker="$1" ${ssh_flags[@]+"${ssh_flags[@]}"} \
    --command="$2" --quiet
}

tpu_scp_home() {  # tpu_scp_home FILE... : copy the files into the home directory of every worker
  local ssh_flags
  _ssh_flags
  set_loc
  gc compute tpus tpu-vm scp "$@" "$TPU_NAME:" "${loc[@]}" --worker=all ${ssh_flags[@]+"${ssh_flags[@]}"} --quiet
}

# ---------------------------------------------------------------------------------------------
# Remote commands (POSIX sh, run from the worker's home directory). worker_run.sh implements them
# on the worker; see its --help.
worker_run='jaxcnn/tpu_scripts/worker_run.sh'

remote_start() {  # remote_start JOB ARGS... : start worker_run.sh JOB detached (setsid nohup)
  local words=(env) name
  # FORWARD_ENV holds names only (checked by init), so splitting it on spaces is the intent.
  # shellcheck disable=SC2086
  for name in $FORWARD_ENV; do
    [[ -z ${!name+x} ]] || words+=("$name=${!name}")
  done
  words+=(bash "$worker_run" start "$@")
  printf 'cd && %s' "$(qwords "${words[@]}")"
}

remote_status() {  # remote_status JOB TAIL : one "JAXCNN_WORKER <host> <state>" line per worker
  # A worker without the code (a fresh slice) answers "none". $(hostname) is expanded remotely.
  # shellcheck disable=SC2016
  printf 'cd && if [ -f %s ]; then bash %s status %s %s; else echo "JAXCNN_WORKER $(hostname) none"; fi' \
    "$worker_run" "$worker_run" "$(q "$1")" "$(q "$2")"
}

remote_stop() {  # remote_stop JOB : SIGTERM to the pid in the job's pid file (never by name)
  # shellcheck disable=SC2016
  printf 'cd && if [ -f %s ]; then bash %s stop %s; else echo "JAXCNN_WORKER $(hostname) not-running"; fi' \
    "$worker_run" "$worker_run" "$(q "$1")"
}

# probe_verdict : read worker_run.sh status lines on stdin; print one word for the whole slice:
#   running  some worker still runs the job (peers of a dead process exit on JAX's heartbeat)
#   done     every worker exited 0
#   stopped  it ended after stop.sh (a stop_requested mark on some worker)
#   failed=N a worker exited 1 (non-finite loss) or 2 (bad settings): not worth a retry
#   fresh    some worker has never run it (a new slice): set up, then start
#   retry=S  anything else (130 without stop.sh, a crash, a killed process): start it again
#   unknown  no status line at all
probe_verdict() {
  local tag state n=0 running=0 fresh=0 stopped=0 all_zero=1 failed='' other=''
  while read -r tag _ state _; do
    [[ $tag == JAXCNN_WORKER ]] || continue
    n=$((n + 1))
    [[ $state == *,stopped ]] && stopped=1
    state=${state%,stopped}
    case $state in
      running) running=1 ;;
      exit=0) ;;
      exit=1 | exit=2)
        all_zero=0
        [[ $failed == 2 ]] || failed=${state#exit=} ;;
      none) fresh=1; all_zero=0 ;;
      *) all_zero=0; other=$state ;;
    esac
  done
  if ((n == 0)); then echo unknown
  elif ((running)); then echo running
  elif ((all_zero)); then echo 'done'
  elif ((stopped)); then echo stopped
  elif [[ -n $failed ]]; then echo "failed=$failed"
  elif ((fresh)); then echo fresh
  else echo "retry=${other:-unknown}"
  fi
}

ship_repo=''
ship_commit=''
check_ref() {  # check_ref : GIT_REF is a commit that has tpu_scripts/ (sets ship_repo, ship_commit)
  ship_repo=$(cd "$tpu_scripts_dir/.." && pwd)
  ship_commit=$(git -C "$ship_repo" rev-parse --verify --quiet "$GIT_REF^{commit}") ||
    die 2 "GIT_REF='$GIT_REF' is not a commit of $ship_repo"
  git -C "$ship_repo" cat-file -e "$ship_commit:tpu_scripts/worker_setup.sh" 2>/dev/null ||
    die 2 "commit $ship_commit ($GIT_REF) has no tpu_scripts/worker_setup.sh: commit tpu_scripts/ first"
}

setup_workers() {  # setup_workers : ship GIT_REF (git archive) to every worker and run worker_setup.sh
  local tmp rc=0
  [[ -n $ship_commit ]] || check_ref
  # GIT_OPTIONAL_LOCKS=0: `git status` then never rewrites the index (someone may be working in
  # this checkout at the same time).
  if [[ -n $(GIT_OPTIONAL_LOCKS=0 git -C "$ship_repo" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    log "warning: uncommitted changes are not shipped; the workers get $GIT_REF = $ship_commit"
  fi
  if [[ $DRY_RUN == 1 ]]; then
    tmp=TMP
    qline git -C "$ship_repo" archive --format=tar.gz -o "$tmp/jaxcnn.tar.gz" "$ship_commit" >&3
    qline git -C "$ship_repo" show "$ship_commit:tpu_scripts/worker_setup.sh" >&3
  else
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/jaxcnn-setup.XXXXXX")
    git -C "$ship_repo" archive --format=tar.gz -o "$tmp/jaxcnn.tar.gz" "$ship_commit"
    # worker_setup.sh from the same commit as the code, not from the working tree.
    git -C "$ship_repo" show "$ship_commit:tpu_scripts/worker_setup.sh" >"$tmp/worker_setup.sh"
  fi
  log "shipping $ship_commit to every worker of $TPU_NAME"
  tpu_scp_home "$tmp/jaxcnn.tar.gz" "$tmp/worker_setup.sh" || rc=$?
  if ((rc == 0)); then
    tpu_ssh all "cd && $(qwords bash worker_setup.sh jaxcnn.tar.gz "$PYTHON_VERSION" "$ship_commit")" || rc=$?
  fi
  [[ $DRY_RUN == 1 ]] || rm -rf "$tmp"
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  # Run directly: the table of every setting.
  summary="common.sh: sourced by the tpu_scripts entry points (not run on its own)."
  while IFS='|' read -r _name _; do uses+=("$_name"); done < <(_settings_table)
  usage
  exit 0
fi
