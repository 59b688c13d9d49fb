#!/usr/bin/env bash
# worker_setup.sh: runs on each TPU VM (setup.sh copies it, with the code tarball, into the home
# directory of every worker and runs it there on all of them at once).
#
#   worker_setup.sh TARBALL [PYTHON_VERSION [COMMIT]]
#
# 1. Refuses (exit 6) while a train or prepare job of worker_run.sh is alive: the code under a
#    running trainer is not swapped.
# 2. Unpacks TARBALL (a `git archive` of the commit) into a fresh directory and swaps it in as
#    ~/jaxcnn (files deleted in the commit do not linger), with COMMIT in ~/jaxcnn/.commit.
# 3. Finds uv (PATH, ~/.local/bin), or installs it with `python3 -m pip install --user uv`.
# 4. Makes ~/jaxcnn_venv with `uv venv --python PYTHON_VERSION` (default 3.12; uv downloads that
#    Python if the image lacks it, so no apt and no deadsnakes PPA), unless it already has it;
#    then `uv pip install -e ~/jaxcnn[tpu]` (jax[tpu] and libtpu). The venv lives outside ~/jaxcnn
#    so that a new commit keeps it, and the editable install keeps pointing at ~/jaxcnn.
# 5. Turns on transparent hugepages when they are off (best effort, `sudo -n`): JAX warns on
#    v5e and newer that TPU runtime start-up is slower without them.
# 6. Checks that `import jax, jaxcnn` works, and prints "JAXCNN_SETUP <host> ok <commit>".
#    It does not open the TPU: on a pod slice that needs every host in jax.distributed.
# Idempotent: running it again with the same tarball changes nothing but the unpacked copy.
set -euo pipefail

if [[ ${1-} == -h || ${1-} == --help ]]; then
  sed -n '2,21s/^# \{0,1\}//p' "$0"
  cat <<'EOF'

Settings (environment variables) read by worker_setup.sh: none (it reads only HOME and PATH).
Exit status: 0 ready; 6 a job is running; 2 bad usage; otherwise the failing step's status.
EOF
  exit 0
fi
[[ $# -ge 1 && $# -le 3 ]] || { echo "usage: worker_setup.sh TARBALL [PYTHON_VERSION [COMMIT]]" >&2; exit 2; }
tarball=$1
python_version=${2:-3.12}
commit=${3:-unknown}
code=$HOME/jaxcnn
venv=$HOME/jaxcnn_venv
host=$(hostname)

[[ -f $tarball ]] || { echo "worker_setup.sh: no file $tarball" >&2; exit 2; }

# 1. Same test as worker_run.sh's alive(): a live pid whose command line names jaxcnn.
for job in train prepare; do
  pidfile=$HOME/jaxcnn_run/$job/pid
  [[ -s $pidfile ]] || continue
  pid=$(<"$pidfile")
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && grep -qa jaxcnn "/proc/$pid/cmdline" 2>/dev/null; then
    echo "worker_setup.sh: $job is running on $host (pid $pid); stop it first (stop.sh)" >&2
    exit 6
  fi
done

# 2. Unpack next to ~/jaxcnn, then swap.
new=$(mktemp -d "$HOME/.jaxcnn.new.XXXXXX")
tar -xzf "$tarball" -C "$new"
printf '%s\n' "$commit" >"$new/.commit"
rm -rf "$code.old"
[[ ! -e $code ]] || mv "$code" "$code.old"
mv "$new" "$code"
rm -rf "$code.old"

# 3. uv.
uv=$(command -v uv || true)
[[ -n $uv || ! -x $HOME/.local/bin/uv ]] || uv=$HOME/.local/bin/uv
if [[ -z $uv ]]; then
  # An image whose Python is "externally managed" (PEP 668) refuses a plain --user install.
  python3 -m pip install --user --quiet uv || python3 -m pip install --user --quiet --break-system-packages uv
  uv=$HOME/.local/bin/uv
fi

# 4. The venv.
have=''
[[ ! -x $venv/bin/python ]] || have=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' || true)
if [[ $have != "$python_version" ]]; then
  rm -rf "$venv"
  "$uv" venv --python "$python_version" "$venv"
fi
"$uv" pip install --python "$venv/bin/python" -e "${code}[tpu]"

# 5. Transparent hugepages.
thp=/sys/kernel/mm/transparent_hugepage/enabled
if [[ -r $thp ]] && ! grep -q '\[always\]' "$thp"; then
  sudo -n sh -c "echo always > $thp" || echo "worker_setup.sh: could not turn on transparent hugepages (no passwordless sudo)" >&2
fi

# 6. Check.
"$venv/bin/python" -c 'import jax, jaxcnn; print("jax", jax.__version__, "jaxcnn", jaxcnn.__version__)'
echo "JAXCNN_SETUP $host ok $commit"
