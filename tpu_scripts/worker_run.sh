#!/usr/bin/env bash
# worker_run.sh: the worker side of tpu_scripts. It runs on each TPU VM (it arrives there in the
# code tarball, at ~/jaxcnn/tpu_scripts/worker_run.sh); the laptop-side scripts call it over ssh.
#
#   worker_run.sh start JOB [ARGS...]   start `run JOB ARGS` detached from the ssh session
#                                       (setsid nohup, stdin from /dev/null, output appended to the
#                                       job's log), wait until its pid file exists, print
#                                       "JAXCNN_STARTED <host> <pid>". Exit 6 if the job is alive.
#   worker_run.sh run JOB [ARGS...]     the wrapper itself (foreground): run the job's python, record
#                                       its pid, forward SIGTERM / SIGINT to it, record its exit
#                                       status in exit_code.
#   worker_run.sh status JOB [N]        print "JAXCNN_WORKER <host> <state>" and the last N log lines;
#                                       state: running | none | lost | exit=<status>, with ",stopped"
#                                       appended after `stop`.
#   worker_run.sh stop JOB              mark stop_requested and SIGTERM the pid in the pid file
#                                       (never a process found by name). The trainer saves a
#                                       checkpoint and exits 130.
#
# JOB is `train` (python -m jaxcnn.train --distributed ARGS) or `prepare` (python -m jaxcnn.prepare
# ARGS, with JAX_PLATFORMS=cpu so that it never holds the TPU). Each job has ~/jaxcnn_run/JOB/ with
# pid, exit_code, log, wrapper_pid and stop_requested. The python is ~/jaxcnn_venv/bin/python (made
# by worker_setup.sh).
set -euo pipefail

usage() {
  sed -n '2,24s/^# \{0,1\}//p' "$0"
  cat <<'EOF'

Settings (environment variables) read by worker_run.sh: none. It reads only HOME, and passes its
environment (LIBTPU_INIT_ARGS and the like, set by launch.sh) on to python.

Exit status: start: 0 started, 6 already running, 4 the wrapper wrote no pid within 60 s;
run: the python's exit status (128+N if it died of signal N); status, stop: 0; 2 bad usage.
EOF
}

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
venv_python=$HOME/jaxcnn_venv/bin/python
code_dir=$HOME/jaxcnn
host=$(hostname)

job_dir() {  # job_dir JOB : the job's state directory (created; JOB was checked by the caller)
  mkdir -p "$HOME/jaxcnn_run/$1"
  printf '%s' "$HOME/jaxcnn_run/$1"
}

alive() {  # alive PIDFILE : the pid in PIDFILE is a live jaxcnn process
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # A pid file can outlive its process (a reboot, say) and the pid be reused by another program:
  # only a process whose command line names jaxcnn counts. A zombie has an empty cmdline.
  [[ ! -r /proc/$pid/cmdline ]] || grep -qa jaxcnn "/proc/$pid/cmdline"
}

tpu_holders() {  # tpu_holders : pids (of this user) holding a TPU device open
  local fd target
  compgen -G '/dev/accel*' >/dev/null || compgen -G '/dev/vfio/*' >/dev/null || return 0
  for fd in /proc/[0-9]*/fd/*; do
    target=$(readlink "$fd" 2>/dev/null) || continue
    case $target in
      /dev/accel* | /dev/vfio/*) fd=${fd#/proc/}; printf '%s\n' "${fd%%/*}" ;;
    esac
  done | sort -u
}

cmd_start() {
  local job=$1 d i
  shift
  d=$(job_dir "$job")
  if alive "$d/pid"; then
    echo "worker_run.sh: $job is already running on $host (pid $(<"$d/pid")); stop it first (stop.sh)" >&2
    return 6
  fi
  rm -f "$d/pid" "$d/exit_code" "$d/stop_requested"
  # setsid: a new session, so the end of the ssh session (SIGHUP to its process group) does not
  # reach it; nohup for good measure; no terminal or ssh pipe stays open, so ssh returns at once.
  setsid nohup bash "$self" run "$job" "$@" >>"$d/log" 2>&1 </dev/null &
  for ((i = 0; i < 600; i++)); do
    if [[ -s $d/pid ]]; then
      echo "JAXCNN_STARTED $host $(<"$d/pid")"
      return 0
    elif [[ -s $d/exit_code ]]; then  # the wrapper refused before starting python
      echo "worker_run.sh: $job did not start on $host (status $(<"$d/exit_code")); see $d/log" >&2
      return "$(<"$d/exit_code")"
    fi
    sleep 0.1
  done
  echo "worker_run.sh: $job wrote no pid within 60 s on $host; see $d/log" >&2
  return 4
}

cmd_run() {
  local job=$1 d child rc got module=()
  shift
  d=$(job_dir "$job")
  # One wrapper per job at a time. The lock is inherited by the python, so it holds while the
  # trainer lives even if this wrapper is killed.
  exec 9>>"$d/lock"
  if ! flock -n 9; then
    echo "worker_run.sh: another $job holds $d/lock" >&2
    exit 6
  fi
  echo $$ >"$d/wrapper_pid"
  printf '==== %s %s on %s, commit %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$job" "$host" \
    "$(cat "$code_dir/.commit" 2>/dev/null || echo unknown)"
  case $job in
    train)
      module=(-m jaxcnn.train --distributed)
      # libtpu leaves /tmp/libtpu_lockfile behind when it dies; remove it only when no process
      # holds the TPU (otherwise say who does: the trainer would fail to open the device).
      local holders
      holders=$(tpu_holders)
      if [[ -n $holders ]]; then
        echo "worker_run.sh: the TPU is held by pid(s) $(echo "$holders" | tr '\n' ' ')on $host; stop them first" >&2
        echo 6 >"$d/exit_code.tmp" && mv -f "$d/exit_code.tmp" "$d/exit_code"
        exit 6
      fi
      rm -f /tmp/libtpu_lockfile
      ;;
    prepare)
      module=(-m jaxcnn.prepare)
      export JAX_PLATFORMS=cpu
      ;;
  esac
  export PYTHONUNBUFFERED=1  # the log shows progress as it happens (status.sh tails it)
  printf '==== argv:'
  printf ' [%s]' "$venv_python" "${module[@]}" "$@"
  printf '\n'
  cd "$code_dir"
  "$venv_python" "${module[@]}" "$@" &
  child=$!
  echo "$child" >"$d/pid.tmp" && mv -f "$d/pid.tmp" "$d/pid"
  # Forward TERM / INT to the python (the trainer saves a checkpoint and exits 130). A trapped
  # signal interrupts `wait` (status > 128) while the child may still run, so wait again until
  # `wait` returns because the child ended.
  got=0
  # shellcheck disable=SC2329  # called by the traps
  forward() {
    got=1
    kill -s "$1" "$child" 2>/dev/null || true
  }
  trap 'forward TERM' TERM
  trap 'forward INT' INT
  while :; do
    got=0
    rc=0
    wait "$child" || rc=$?
    ((got)) || break
  done
  echo "$rc" >"$d/exit_code.tmp" && mv -f "$d/exit_code.tmp" "$d/exit_code"
  printf '==== %s %s exited with status %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$job" "$rc"
  exit "$rc"
}

cmd_status() {
  local job=$1 lines=${2:-0} d state
  [[ $lines =~ ^[0-9]+$ ]] || { echo "worker_run.sh: status: '$lines' is not a line count" >&2; exit 2; }
  d=$(job_dir "$job")
  if [[ -s $d/exit_code ]]; then
    state="exit=$(<"$d/exit_code")"
  elif alive "$d/pid"; then
    state=running
  elif [[ -e $d/pid ]]; then
    state=lost  # a pid file, a dead process and no exit status: the wrapper was killed
  else
    state=none
  fi
  [[ ! -e $d/stop_requested ]] || state+=,stopped
  echo "JAXCNN_WORKER $host $state"
  if ((lines > 0)) && [[ -f $d/log ]]; then
    tail -n "$lines" "$d/log" | sed "s/^/[$host] /"
  fi
}

cmd_stop() {
  local job=$1 d pid
  d=$(job_dir "$job")
  if alive "$d/pid"; then
    pid=$(<"$d/pid")
    : >"$d/stop_requested"
    kill -TERM "$pid"
    echo "JAXCNN_WORKER $host stopping pid $pid"
  else
    echo "JAXCNN_WORKER $host not-running"
  fi
}

case ${1-} in
  -h | --help) usage; exit 0 ;;
  start | run | status | stop)
    [[ $# -ge 2 && ( $2 == train || $2 == prepare ) ]] || {
      echo "worker_run.sh: usage: worker_run.sh start|run|status|stop train|prepare [ARGS...]" >&2
      exit 2
    }
    cmd=$1
    shift
    "cmd_$cmd" "$@"
    ;;
  *) usage >&2; exit 2 ;;
esac
