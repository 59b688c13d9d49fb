"""tpu_scripts/, offline: a fake gcloud (tests/tpu_scripts/bin/gcloud) records the exact argv of every
call and answers from a scenario of states over time; the worker side (worker_setup.sh,
worker_run.sh) runs here for real in a temporary HOME, with a fake python, uv and sudo.

What is asserted is whole command lines (lists), never substrings. The remote commands that the
laptop-side scripts send are run through `bash -c` and `sh -c` (what sshd does with the login
shell), and the fake python records the argv the trainer would get.

The scripts under test are a copy of tpu_scripts/ committed in a temporary git repository (setup.sh
ships `git archive` of a commit, and this checkout's commit may not hold the current scripts).
"""

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from helpers import shellcheck

HERE = Path(__file__).resolve().parent
BIN = HERE / "bin"
ROOT = HERE.parents[1]
SCRIPTS = ROOT / "tpu_scripts"
ENTRY_POINTS = [
    "create.sh",
    "setup.sh",
    "prepare_data.sh",
    "launch.sh",
    "status.sh",
    "stop.sh",
    "delete.sh",
    "babysit.sh",
]

ZONE = "us-east5-b"
TPU = "jaxcnn-test"
WORKDIR = "gs://bkt/runs/r1"
DATA_DIR = "gs://bkt/tensorflow_datasets"
LOC = [f"--zone={ZONE}"]
QR_LIST = ["compute", "tpus", "queued-resources", "list", *LOC]
QR_LIST += ["--format=value(name.basename(),state.state)", "--quiet"]
VM_LIST = ["compute", "tpus", "tpu-vm", "list", *LOC, "--format=value(name.basename(),state)"]
VM_LIST += ["--quiet"]
QR_DELETE = ["compute", "tpus", "queued-resources", "delete", TPU, *LOC, "--force", "--quiet"]
WORKER_RUN = "jaxcnn/tpu_scripts/worker_run.sh"
STATUS_TRAIN = (
    f"cd && if [ -f {WORKER_RUN} ]; then bash {WORKER_RUN} status train 0; "
    'else echo "JAXCNN_WORKER $(hostname) none"; fi'
)
# The trainer flags of most tests: one with a space, one with quotes, $, a backtick and a backslash.
TRAIN_ARGS = ["--arch=resnet50", "--config.note=a b", '--config.tag=it\'s "q" $HOME `x` \\ *']
START_TRAIN = (
    f"cd && env bash {WORKER_RUN} start train --data_dir={DATA_DIR} --workdir={WORKDIR} "
    "--arch=resnet50 '--config.note=a b' '--config.tag=it'\\''s \"q\" $HOME `x` \\ *'"
)


def qr_create(*tier, accelerator="v6e-8", runtime="v2-alpha-tpuv6e"):
    return [
        *["compute", "tpus", "queued-resources", "create", TPU, *LOC, f"--node-id={TPU}"],
        *[f"--accelerator-type={accelerator}", f"--runtime-version={runtime}", *tier, "--quiet"],
    ]


def ssh(worker, command):
    return [
        *["compute", "tpus", "tpu-vm", "ssh", TPU, *LOC, f"--worker={worker}"],
        *[f"--command={command}", "--quiet"],
    ]


SCP = [
    *["compute", "tpus", "tpu-vm", "scp", "TMP/jaxcnn.tar.gz", "TMP/worker_setup.sh"],
    *[f"{TPU}:", *LOC, "--worker=all", "--quiet"],
]


def setup_ssh(commit):
    return ssh("all", f"cd && bash worker_setup.sh jaxcnn.tar.gz 3.12 {commit}")


def workers(*states):
    return "".join(f"JAXCNN_WORKER {TPU}-w-{i} {s}\n" for i, s in enumerate(states))


def qr(state):
    return {"match": ["queued-resources list"], "stdout": f"other-qr\tACTIVE\n{TPU}\t{state}\n"}


QR_MISSING = {"match": ["queued-resources list"], "stdout": "other-qr\tACTIVE\n"}


def probe(*states):
    return {"match": ["tpu-vm ssh", "status train"], "stdout": workers(*states)}


def once(rule):
    return {**rule, "times": 1}


@pytest.fixture(scope="session")
def fakes(tmp_path_factory):
    """tests/tpu_scripts/bin/ with each fake's `#!/usr/bin/env python3` line pinned to this
    interpreter, with -SE (no site, no PYTHON* variables): `python3` on PATH can be a pyenv shim
    that costs ~0.2 s a start, and a babysit scenario makes twenty calls."""
    path = tmp_path_factory.mktemp("bin")
    for fake in BIN.iterdir():
        lines = fake.read_text().split("\n")
        assert lines[0].startswith("#!/usr/bin/env ") and "python3" in lines[0], fake
        (path / fake.name).write_text("\n".join([f"#!{sys.executable} -SE", *lines[1:]]))
        (path / fake.name).chmod(0o755)
    return path


@pytest.fixture(scope="session")
def repo(tmp_path_factory):
    """A git repository holding a copy of tpu_scripts/ and a stub package, in one commit."""
    path = tmp_path_factory.mktemp("repo")
    shutil.copytree(SCRIPTS, path / "tpu_scripts")
    (path / "jaxcnn").mkdir()
    (path / "jaxcnn" / "__init__.py").write_text('__version__ = "0"\n')
    (path / "pyproject.toml").write_text('[project]\nname = "jaxcnn"\nversion = "0"\n')
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "-c", "commit.gpgsign=false", "commit", "-qm", "c"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return path, commit


class Run:
    def __init__(self, proc, calls):
        self.rc, self.out, self.err, self.calls = proc.returncode, proc.stdout, proc.stderr, calls


@pytest.fixture
def tpu(repo, fakes, tmp_path):
    """tpu(script, *args, scenario=[...], **settings) runs a copy of tpu_scripts/SCRIPT with the fake
    gcloud first on PATH; returns rc, out, err and `calls` (the argv lists, temp paths as TMP/)."""
    path, _ = repo

    def run(script, *args, scenario=(), timeout=20, **settings):
        log = tmp_path / "gcloud.jsonl"
        log.write_text("")
        scenario_file = tmp_path / "scenario.json"
        scenario_file.write_text(json.dumps(list(scenario)))
        Path(f"{scenario_file}.used").unlink(missing_ok=True)
        env = {
            "PATH": f"{fakes}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            "FAKE_GCLOUD_LOG": str(log),
            "FAKE_GCLOUD_SCENARIO": str(scenario_file),
            "ZONE": ZONE,
            "TPU_NAME": TPU,
            "WORKDIR": WORKDIR,
            "DATA_DIR": DATA_DIR,
            "POLL_SECONDS": "0",
            **settings,
        }
        proc = subprocess.run(
            ["bash", str(path / "tpu_scripts" / script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,  # the fake gcloud's runaway guard kills this process group
        )
        tmp = re.compile(re.escape(str(tmp_path)) + r"/jaxcnn-setup\.[^/]+/")
        calls = [
            [tmp.sub("TMP/", a) for a in json.loads(line)]
            for line in log.read_text().split("\n")
            if line
        ]
        return Run(proc, calls)

    return run


# ---------------------------------------------------------------------------------------------
# create.sh


@pytest.mark.parametrize(
    ("accelerator", "runtime"),
    [
        ("v6e-8", "v2-alpha-tpuv6e"),
        ("v6e-32", "v2-alpha-tpuv6e"),
        ("v5litepod-8", "v2-alpha-tpuv5-lite"),
        ("v5litepod-16", "v2-alpha-tpuv5-lite"),
        ("v5p-8", "v2-alpha-tpuv5"),
        ("v4-32", "tpu-ubuntu2204-base"),
    ],
)
def test_create_vm_maps_the_runtime_image(tpu, accelerator, runtime):
    r = tpu(
        "create.sh",
        MODE="vm",
        ACCELERATOR_TYPE=accelerator,
        scenario=[
            once({"match": ["tpu-vm list"]}),
            {"match": ["tpu-vm list"], "stdout": f"{TPU}\tREADY\n"},
        ],
    )
    assert r.rc == 0, r.err
    create = ["compute", "tpus", "tpu-vm", "create", TPU, *LOC, f"--accelerator-type={accelerator}"]
    assert r.calls == [VM_LIST, [*create, f"--version={runtime}", "--quiet"], VM_LIST]


def test_create_spot_queued_resource_waits_until_active(tpu):
    r = tpu(
        "create.sh",
        SPOT="1",
        VALID_UNTIL="6h",
        PROJECT="my-proj",
        scenario=[
            once(QR_MISSING),
            once(qr("WAITING_FOR_RESOURCES")),
            once(qr("PROVISIONING")),
            qr("ACTIVE"),
        ],
    )
    assert r.rc == 0, r.err
    loc = [*LOC, "--project=my-proj"]
    qr_list = [*QR_LIST[:4], *loc, *QR_LIST[5:]]
    assert r.calls == [
        qr_list,
        [
            *["compute", "tpus", "queued-resources", "create", TPU, *loc, f"--node-id={TPU}"],
            *["--accelerator-type=v6e-8", "--runtime-version=v2-alpha-tpuv6e", "--spot"],
            *["--valid-until-duration=6h", "--quiet"],
        ],
        qr_list,
        qr_list,
        qr_list,
    ]


def test_create_reserved_with_explicit_runtime_and_qr_id(tpu):
    r = tpu("create.sh", RESERVED="1", RUNTIME_VERSION="v2-alpha-tpuv6e-x", QR_ID="my-qr", WAIT="0")
    assert r.rc == 0, r.err
    create = qr_create("--reserved", runtime="v2-alpha-tpuv6e-x")
    create[4] = "my-qr"
    assert r.calls == [QR_LIST, create]


def test_create_is_idempotent(tpu):
    assert tpu("create.sh", scenario=[qr("ACTIVE")]).calls == [QR_LIST]
    # A suspended (preempted) one is deleted first: spot TPUs cannot be restarted.
    r = tpu("create.sh", WAIT="0", scenario=[qr("SUSPENDED")])
    assert r.rc == 0, r.err
    assert r.calls == [QR_LIST, QR_DELETE, qr_create()]
    # One still queued is waited for, not created twice.
    r = tpu("create.sh", scenario=[once(qr("WAITING_FOR_RESOURCES")), qr("ACTIVE")])
    assert r.calls == [QR_LIST, QR_LIST]


def test_create_gives_up_on_failed_and_on_timeout(tpu):
    r = tpu("create.sh", scenario=[once(QR_MISSING), qr("FAILED")])
    assert r.rc == 3 and "FAILED" in r.err
    assert r.calls == [QR_LIST, qr_create(), QR_LIST]
    r = tpu(
        "create.sh", POLL_SECONDS="1", CREATE_TIMEOUT="1", scenario=[qr("WAITING_FOR_RESOURCES")]
    )
    assert r.rc == 4 and "after 1 s" in r.err
    assert r.calls == [QR_LIST] * len(r.calls) and 2 <= len(r.calls) <= 4


# ---------------------------------------------------------------------------------------------
# Settings are checked before any gcloud call.


@pytest.mark.parametrize(
    ("script", "args", "settings", "message"),
    [
        ("create.sh", (), {"ZONE": ""}, "ZONE is not set"),
        ("create.sh", (), {"TPU_NAME": ""}, "TPU_NAME is not set"),
        ("create.sh", (), {"TPU_NAME": "My_TPU"}, "TPU_NAME='My_TPU' is not a valid name"),
        (
            "create.sh",
            (),
            {"ACCELERATOR_TYPE": "v7x-8"},
            "no default runtime for ACCELERATOR_TYPE=v7x-8",
        ),
        ("create.sh", (), {"SPOT": "1", "RESERVED": "1"}, "choose one"),
        ("create.sh", (), {"MODE": "vm", "VALID_UNTIL": "6h"}, "queued resources only"),
        ("create.sh", (), {"SPOT": "yes"}, "SPOT='yes': use 0 or 1"),
        ("create.sh", ("--zone=x",), {}, "takes no arguments"),
        (
            "launch.sh",
            (),
            {"WORKDIR": "runs/r1"},
            "WORKDIR='runs/r1' must be a gs://BUCKET/... URL",
        ),
        (
            "launch.sh",
            (),
            {"WORKDIR": "/tmp/r1"},
            "WORKDIR='/tmp/r1' must be a gs://BUCKET/... URL",
        ),
        ("launch.sh", (), {"DATA_DIR": "/data"}, "DATA_DIR='/data' must be a gs://BUCKET/... URL"),
        ("launch.sh", ("--", "--workdir=/tmp/x"), {}, "'--workdir=/tmp/x': set WORKDIR / DATA_DIR"),
        (
            "launch.sh",
            ("--distributed",),
            {},
            "'--distributed': tpu_scripts runs every worker with",
        ),
        ("babysit.sh", (), {"WORKDIR": "gs:/bkt/r"}, "WORKDIR='gs:/bkt/r' must be a gs://"),
        ("babysit.sh", (), {"DATA_DIR": "s3://bkt/d"}, "DATA_DIR='s3://bkt/d' must be a gs://"),
        ("babysit.sh", (), {"GIT_REF": "no-such-ref"}, "GIT_REF='no-such-ref' is not a commit"),
        ("prepare_data.sh", (), {}, "DATASET is not set"),
        ("stop.sh", (), {"STOP_TIMEOUT": "10m"}, "STOP_TIMEOUT='10m' is not a whole number"),
        ("delete.sh", (), {"MODE": "pod"}, "MODE='pod': use qr or vm"),
        ("status.sh", (), {"GCLOUD": "no-such-gcloud"}, "GCLOUD='no-such-gcloud' is not a command"),
    ],
)
def test_bad_settings_exit_2_with_one_line_and_no_call(tpu, script, args, settings, message):
    r = tpu(script, *args, **settings)
    assert r.rc == 2
    assert r.calls == []
    assert r.err.count("\n") == 1 and message in r.err, r.err


# ---------------------------------------------------------------------------------------------
# The worker side, run here: a temporary HOME is one worker.


@pytest.fixture
def worker(fakes, tmp_path):
    """A worker's home with ~/jaxcnn/tpu_scripts and a fake ~/jaxcnn_venv/bin/python; `sh(cmd)` runs
    a remote command there the way sshd does (the login shell's -c). Processes left alive by a test
    are killed at the end, by the pids in their pid files."""
    home = tmp_path / "worker"
    (home / "jaxcnn").mkdir(parents=True)
    shutil.copytree(SCRIPTS, home / "jaxcnn" / "tpu_scripts")
    (home / "jaxcnn_venv" / "bin").mkdir(parents=True)
    shutil.copy(fakes / "python", home / "jaxcnn_venv" / "bin" / "python")
    env = {
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "HOME": str(home),
        "FAKE_PYTHON_LOG": str(tmp_path / "python.jsonl"),
        "FAKE_UV_LOG": str(tmp_path / "uv.jsonl"),
        "FAKE_SUDO_LOG": str(tmp_path / "sudo.jsonl"),
    }

    w = types.SimpleNamespace(home=home, env=env, run_dir=home / "jaxcnn_run" / "train")

    def sh(command, shell="bash", **extra_env):
        return subprocess.run(
            [shell, "-c", command],
            cwd=home,
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=20,
        )

    def python_calls():
        path = tmp_path / "python.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def wait_for(path, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not (path.exists() and path.read_text().strip()):
            assert time.monotonic() < deadline, f"{path} did not appear"
            time.sleep(0.02)
        return path.read_text().strip()

    def wait_for_python(n=1):  # the fake python has started (its signal handlers are in place)
        deadline = time.monotonic() + 10
        while len(python_calls()) < n:
            assert time.monotonic() < deadline, "the fake python did not start"
            time.sleep(0.02)

    w.sh, w.python_calls, w.wait_for, w.wait_for_python = (
        sh,
        python_calls,
        wait_for,
        wait_for_python,
    )
    yield w
    for pidfile in home.glob("jaxcnn_run/*/*pid"):
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_launch_sends_one_command_whose_argv_reaches_the_trainer_exactly(tpu, worker):
    r = tpu("launch.sh", "--", *TRAIN_ARGS, LIBTPU_INIT_ARGS="--xla_a=1 --xla_b='2 3'")
    assert r.rc == 0, r.err
    start = START_TRAIN.replace(
        "env bash", "env 'LIBTPU_INIT_ARGS=--xla_a=1 --xla_b='\\''2 3'\\''' bash"
    )
    assert r.calls == [ssh("all", start)]
    command = r.calls[0][-2].removeprefix("--command=")
    # Through bash -c and through a plain POSIX sh (dash here): the same argv, no expansion.
    for shell in ("bash", "sh"):
        shutil.rmtree(worker.run_dir, ignore_errors=True)
        p = worker.sh(command, shell=shell)
        assert p.returncode == 0, p.stderr
        assert re.fullmatch(r"JAXCNN_STARTED \S+ \d+\n", p.stdout)
        assert worker.wait_for(worker.run_dir / "exit_code") == "0"
    first, second = worker.python_calls()
    assert first == second
    assert first["argv"] == [
        *["-m", "jaxcnn.train", "--distributed", f"--data_dir={DATA_DIR}", f"--workdir={WORKDIR}"],
        *TRAIN_ARGS,
    ]
    # FORWARD_ENV: set here, so passed on; XLA_FLAGS was not set, so absent. No TPU for prepare only.
    assert first["env"] == {
        "LIBTPU_INIT_ARGS": "--xla_a=1 --xla_b='2 3'",
        "XLA_FLAGS": None,
        "JAX_PLATFORMS": None,
    }
    assert first["cwd"] == str(worker.home / "jaxcnn")


def test_worker_run_stop_by_pid_file_records_130_and_refuses_a_second_start(worker):
    start = f"cd && bash {WORKER_RUN} start train --arch=resnet8"
    p = worker.sh(start, FAKE_PYTHON_SLEEP="30")
    assert p.returncode == 0, p.stderr
    pid = int(p.stdout.split()[-1])
    assert int(worker.wait_for(worker.run_dir / "pid")) == pid
    worker.wait_for_python()
    status = f"bash {WORKER_RUN} status train 0"
    assert worker.sh(status).stdout == f"JAXCNN_WORKER {os.uname().nodename} running\n"
    # A second start while it is alive: refused, and the first one untouched.
    again = worker.sh(start)
    assert (
        again.returncode == 6 and "already running" in again.stderr and f"pid {pid}" in again.stderr
    )
    assert not (worker.run_dir / "exit_code").exists()
    # stop: SIGTERM to the pid in the pid file; the trainer saves and exits 130.
    stop = worker.sh(f"bash {WORKER_RUN} stop train")
    assert stop.stdout == f"JAXCNN_WORKER {os.uname().nodename} stopping pid {pid}\n"
    assert worker.wait_for(worker.run_dir / "exit_code") == "130"
    assert worker.sh(status).stdout == f"JAXCNN_WORKER {os.uname().nodename} exit=130,stopped\n"
    log = (worker.run_dir / "log").read_text()
    assert "got SIGTERM, checkpoint saved" in log and "train exited with status 130" in log
    assert worker.sh(f"bash {WORKER_RUN} stop train").stdout.endswith(" not-running\n")


def test_worker_run_forwards_sigterm_from_its_wrapper(worker):
    p = worker.sh(f"cd && bash {WORKER_RUN} start train", FAKE_PYTHON_SLEEP="30")
    assert p.returncode == 0, p.stderr
    worker.wait_for_python()
    os.kill(int(worker.wait_for(worker.run_dir / "wrapper_pid")), signal.SIGTERM)
    assert worker.wait_for(worker.run_dir / "exit_code") == "130"
    host = os.uname().nodename
    state, trainer, wrapper = worker.sh(f"bash {WORKER_RUN} status train 2").stdout.splitlines()
    assert state == f"JAXCNN_WORKER {host} exit=130"  # not ",stopped": stop.sh was not used
    assert trainer == f"[{host}] fake trainer: got SIGTERM, checkpoint saved"
    assert wrapper.startswith(f"[{host}] ==== ") and wrapper.endswith(
        " train exited with status 130"
    )


def test_worker_status_of_a_fresh_or_lost_worker(worker):
    host = os.uname().nodename
    assert worker.sh(STATUS_TRAIN).stdout == f"JAXCNN_WORKER {host} none\n"
    shutil.rmtree(worker.home / "jaxcnn")  # a fresh VM: no code yet
    assert worker.sh(STATUS_TRAIN, shell="sh").stdout == f"JAXCNN_WORKER {host} none\n"
    # A pid file whose process is gone without an exit status (the wrapper was SIGKILLed).
    # Its pid may even be reused by another program: only a jaxcnn process counts as alive.
    other = subprocess.Popen(["sleep", "30"])
    try:
        worker.run_dir.mkdir(parents=True, exist_ok=True)
        (worker.run_dir / "pid").write_text(str(other.pid))
        shutil.copytree(SCRIPTS, worker.home / "jaxcnn" / "tpu_scripts")
        assert worker.sh(STATUS_TRAIN).stdout == f"JAXCNN_WORKER {host} lost\n"
    finally:
        other.kill()
        other.wait()


# ---------------------------------------------------------------------------------------------
# setup.sh -> worker_setup.sh -> launch.sh, end to end on one worker.


def test_setup_ships_the_commit_and_makes_the_venv(tpu, repo, worker, tmp_path):
    _, commit = repo
    scp_dir = tmp_path / "scp"
    scp_dir.mkdir()
    r = tpu("setup.sh", FAKE_GCLOUD_SCP_DIR=str(scp_dir))
    assert r.rc == 0, r.err
    assert r.calls == [SCP, setup_ssh(commit)]
    listing = subprocess.run(
        ["tar", "-tzf", str(scp_dir / "jaxcnn.tar.gz")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert {"pyproject.toml", "jaxcnn/__init__.py", "tpu_scripts/worker_run.sh"} <= set(listing)
    # The worker: a fresh home (no code, no venv) gets the copied files and runs the command.
    shutil.rmtree(worker.home)
    worker.home.mkdir()
    for name in ("jaxcnn.tar.gz", "worker_setup.sh"):
        shutil.copy(scp_dir / name, worker.home / name)
    command = r.calls[1][-2].removeprefix("--command=")
    for _ in range(2):
        p = worker.sh(command)
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[-1] == f"JAXCNN_SETUP {os.uname().nodename} ok {commit}"
    h = worker.home
    install = [
        "pip",
        "install",
        "--python",
        f"{h}/jaxcnn_venv/bin/python",
        "-e",
        f"{h}/jaxcnn[tpu]",
    ]
    uv_calls = [json.loads(x) for x in (tmp_path / "uv.jsonl").read_text().splitlines()]
    # The second run finds the venv on the right Python: only the (no-op) install again.
    assert uv_calls == [["venv", "--python", "3.12", f"{h}/jaxcnn_venv"], install, install]
    assert (h / "jaxcnn" / ".commit").read_text() == f"{commit}\n"
    assert (h / "jaxcnn" / "tpu_scripts" / "worker_run.sh").exists()
    sudo = tmp_path / "sudo.jsonl"
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    thp_off = thp.exists() and "[always]" not in thp.read_text()
    expected = [["-n", "sh", "-c", f"echo always > {thp}"]] * 2 if thp_off else []
    assert (
        [json.loads(x) for x in sudo.read_text().splitlines()] if sudo.exists() else []
    ) == expected
    # That worker now runs the launch command.
    launch = tpu("launch.sh", "--", *TRAIN_ARGS)
    p = worker.sh(launch.calls[0][-2].removeprefix("--command="))
    assert p.returncode == 0, p.stderr
    assert worker.wait_for(worker.run_dir / "exit_code") == "0"
    assert worker.python_calls()[-1]["argv"][3:] == [
        f"--data_dir={DATA_DIR}",
        f"--workdir={WORKDIR}",
        *TRAIN_ARGS,
    ]


# ---------------------------------------------------------------------------------------------
# status.sh, stop.sh, delete.sh, prepare_data.sh


def test_status_shows_state_health_and_log_tails(tpu):
    describe = ["compute", "tpus", "tpu-vm", "describe", TPU, *LOC]
    describe += ["--format=value(state,health,healthDescription)", "--quiet"]
    tail = STATUS_TRAIN.replace("status train 0", "status train 5")
    r = tpu(
        "status.sh",
        TAIL_LINES="5",
        scenario=[
            qr("ACTIVE"),
            {"match": ["tpu-vm describe"], "stdout": "READY\tHEALTHY\t\n"},
            {"match": ["status train 5"], "stdout": workers("running") + "[w0] step 100\n"},
        ],
    )
    assert r.rc == 0, r.err
    assert r.calls == [QR_LIST, describe, ssh("all", tail)]
    assert r.out.splitlines() == [
        f"queued resource {TPU}: ACTIVE",
        f"node {TPU}: READY\tHEALTHY\t",
        f"JAXCNN_WORKER {TPU}-w-0 running",
        "[w0] step 100",
    ]
    # Not ACTIVE: no ssh.
    assert tpu("status.sh", scenario=[qr("WAITING_FOR_RESOURCES")]).calls == [QR_LIST]


STOP = (
    f"cd && if [ -f {WORKER_RUN} ]; then bash {WORKER_RUN} stop train; "
    'else echo "JAXCNN_WORKER $(hostname) not-running"; fi'
)


def test_stop_terms_by_pid_file_and_waits_for_the_checkpoint(tpu):
    scenario = [once(probe("running", "running")), probe("exit=130,stopped", "exit=130,stopped")]
    r = tpu("stop.sh", scenario=scenario)
    assert r.rc == 0, r.err
    assert r.calls == [ssh("all", STOP), ssh("all", STATUS_TRAIN), ssh("all", STATUS_TRAIN)]
    assert "pkill" not in STOP and "killall" not in STOP
    r = tpu("stop.sh", scenario=[probe("exit=130,stopped", "exit=134")])
    assert r.rc == 7 and f"{TPU}-w-1 exit=134" in r.err
    r = tpu("stop.sh", STOP_TIMEOUT="0", scenario=[probe("running")])
    assert r.rc == 4


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, QR_DELETE),
        ({"ASYNC": "1"}, [*QR_DELETE[:-1], "--async", "--quiet"]),
        ({"MODE": "vm"}, ["compute", "tpus", "tpu-vm", "delete", TPU, *LOC, "--quiet"]),
        (
            {"MODE": "vm", "ASYNC": "1"},
            ["compute", "tpus", "tpu-vm", "delete", TPU, *LOC, "--async", "--quiet"],
        ),
    ],
)
def test_delete(tpu, settings, expected):
    r = tpu("delete.sh", **settings)
    assert r.rc == 0, r.err
    assert r.calls == [expected]


def test_prepare_data_runs_once_on_worker_0_and_follows_it(tpu, worker):
    status = STATUS_TRAIN.replace("status train 0", "status prepare 1")
    start = f"cd && env bash {WORKER_RUN} start prepare --dataset=imagenette --data_dir={DATA_DIR}"
    prepare_probe = {"match": ["status prepare"]}
    scenario = [
        once({**prepare_probe, "stdout": workers("running") + "[w0] downloading\n"}),
        {**prepare_probe, "stdout": workers("exit=0") + "[w0] done\n"},
    ]
    r = tpu("prepare_data.sh", DATASET="imagenette", scenario=scenario)
    assert r.rc == 0, r.err
    assert r.calls == [ssh(0, start), ssh(0, status), ssh(0, status)]
    assert r.out.splitlines() == ["[w0] downloading", "[w0] done"]
    # Its status is the exit status; one already running (6) is followed, not started twice.
    scenario = [
        {"match": ["start prepare"], "rc": 6},
        {**prepare_probe, "stdout": workers("exit=2")},
    ]
    r = tpu("prepare_data.sh", DATASET="imagenette", scenario=scenario)
    assert r.rc == 2 and r.calls == [ssh(0, start), ssh(0, status)]
    # The worker side: prepare runs without the TPU.
    p = worker.sh(r.calls[0][-2].removeprefix("--command="))
    assert p.returncode == 0, p.stderr
    assert worker.wait_for(worker.home / "jaxcnn_run" / "prepare" / "exit_code") == "0"
    (call,) = worker.python_calls()
    assert call["argv"] == [
        "-m",
        "jaxcnn.prepare",
        "--dataset=imagenette",
        f"--data_dir={DATA_DIR}",
    ]
    assert call["env"]["JAX_PLATFORMS"] == "cpu"


# ---------------------------------------------------------------------------------------------
# babysit.sh


def test_babysit_through_a_preemption(tpu, repo):
    _, commit = repo
    scenario = [
        once(qr("ACTIVE")),
        once(probe("none", "none")),
        once(qr("ACTIVE")),
        once(probe("running", "running")),
        once(qr("SUSPENDED")),  # spot preemption: the nodes are gone
        once(qr("WAITING_FOR_RESOURCES")),
        qr("ACTIVE"),
        once(probe("none", "none")),  # the new slice: nothing there yet
        probe("exit=0", "exit=0"),
    ]
    r = tpu("babysit.sh", "--", *TRAIN_ARGS, SPOT="1", scenario=scenario)
    assert r.rc == 0, r.err
    incarnation = [SCP, setup_ssh(commit), ssh("all", START_TRAIN)]
    assert r.calls == [
        *[QR_LIST, ssh("all", STATUS_TRAIN), *incarnation],
        *[QR_LIST, ssh("all", STATUS_TRAIN)],
        *[QR_LIST, QR_DELETE, qr_create("--spot")],  # the same create line as create.sh's
        *[QR_LIST, QR_LIST, ssh("all", STATUS_TRAIN), *incarnation],  # same command, same WORKDIR
        *[QR_LIST, ssh("all", STATUS_TRAIN)],
    ]
    assert tpu("create.sh", SPOT="1", WAIT="0").calls == [QR_LIST, qr_create("--spot")]
    assert "restart 1 of at most 20" in r.err and "the run finished" in r.err


def test_babysit_creates_a_missing_tpu_without_delete_and_relaunches_after_130(tpu, repo):
    _, commit = repo
    scenario = [
        once(QR_MISSING),
        qr("ACTIVE"),
        once(probe("none", "none")),
        once(probe("exit=130", "exit=130")),  # a maintenance SIGTERM: saved, not stopped by us
        probe("exit=0", "exit=0"),
    ]
    r = tpu("babysit.sh", "--", *TRAIN_ARGS, AUTODELETE="1", scenario=scenario)
    assert r.rc == 0, r.err
    assert r.calls == [
        *[QR_LIST, qr_create()],
        *[QR_LIST, ssh("all", STATUS_TRAIN), SCP, setup_ssh(commit), ssh("all", START_TRAIN)],
        *[QR_LIST, ssh("all", STATUS_TRAIN), ssh("all", START_TRAIN)],  # relaunch: no setup
        *[QR_LIST, ssh("all", STATUS_TRAIN), QR_DELETE],  # finished; AUTODELETE=1
    ]


@pytest.mark.parametrize(("status", "why"), [(1, "non-finite loss"), (2, "bad settings")])
def test_babysit_does_not_retry_exit_1_or_2(tpu, status, why):
    r = tpu("babysit.sh", scenario=[qr("ACTIVE"), probe(f"exit={status}", f"exit={status}")])
    assert r.rc == status
    assert r.calls == [QR_LIST, ssh("all", STATUS_TRAIN)]
    assert why in r.err


def test_babysit_exits_130_after_stop_sh(tpu):
    r = tpu("babysit.sh", scenario=[qr("ACTIVE"), probe("exit=130,stopped", "exit=130,stopped")])
    assert r.rc == 130 and r.calls == [QR_LIST, ssh("all", STATUS_TRAIN)]


def test_babysit_restart_budget(tpu, repo):
    _, commit = repo
    scenario = [
        once(qr("ACTIVE")),
        once(probe("running")),
        once(qr("SUSPENDED")),
        once(qr("ACTIVE")),
        once(probe("none")),
        qr("FAILED"),
    ]
    r = tpu("babysit.sh", MAX_RESTARTS="1", scenario=scenario)
    assert r.rc == 5, r.err
    start = START_TRAIN.split(" --arch")[0]
    assert r.calls == [
        *[QR_LIST, ssh("all", STATUS_TRAIN)],
        *[QR_LIST, QR_DELETE, qr_create()],
        *[QR_LIST, ssh("all", STATUS_TRAIN), SCP, setup_ssh(commit), ssh("all", start)],
        QR_LIST,  # FAILED again: the budget of 1 is spent
    ]
    assert "restart budget (MAX_RESTARTS=1) is spent" in r.err


def test_babysit_recreates_a_slice_whose_workers_do_not_answer(tpu):
    scenario = [
        qr("ACTIVE"),
        {"match": ["status train"], "rc": 255, "times": 2},
        probe("exit=0"),
    ]
    r = tpu("babysit.sh", PROBE_FAILURES="2", scenario=scenario)
    assert r.rc == 0, r.err
    assert r.calls == [
        *[QR_LIST, ssh("all", STATUS_TRAIN)] * 2,
        *[QR_DELETE, qr_create()],
        *[QR_LIST, ssh("all", STATUS_TRAIN)],
    ]


def test_babysit_rides_out_gcloud_failures_but_not_a_first_failed_create(tpu):
    scenario = [
        once({"match": ["queued-resources list"], "rc": 1, "stderr": "ERROR: network\n"}),
        qr("ACTIVE"),
        probe("exit=0"),
    ]
    r = tpu("babysit.sh", scenario=scenario)
    assert r.rc == 0 and r.calls == [QR_LIST, QR_LIST, ssh("all", STATUS_TRAIN)]
    scenario = [{"match": ["queued-resources create"], "rc": 1, "stderr": "ERROR: quota\n"}]
    r = tpu("babysit.sh", scenario=scenario)
    assert r.rc == 1 and r.calls == [QR_LIST, qr_create()] and "could not create" in r.err


def test_babysit_via_gcloud_setting_in_vm_mode(tpu, fakes):
    # GCLOUD= instead of PATH; MODE=vm: a PREEMPTED VM is deleted and created again.
    scenario = [
        once({"match": ["tpu-vm list"], "stdout": f"{TPU}\tPREEMPTED\n"}),
        {"match": ["tpu-vm list"], "stdout": f"{TPU}\tREADY\n"},
        probe("exit=0"),
    ]
    r = tpu(
        "babysit.sh",
        MODE="vm",
        GCLOUD=str(fakes / "gcloud"),
        PATH=os.environ["PATH"],
        scenario=scenario,
    )
    assert r.rc == 0, r.err
    create = ["compute", "tpus", "tpu-vm", "create", TPU, *LOC, "--accelerator-type=v6e-8"]
    assert r.calls == [
        VM_LIST,
        ["compute", "tpus", "tpu-vm", "delete", TPU, *LOC, "--quiet"],
        [*create, "--version=v2-alpha-tpuv6e", "--quiet"],
        VM_LIST,
        ssh("all", STATUS_TRAIN),
    ]


# ---------------------------------------------------------------------------------------------
# DRY_RUN, --help, shellcheck


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_dry_run_calls_nothing_and_prints_the_gcloud_lines(tpu, script):
    args = ("--", *TRAIN_ARGS) if script in ("launch.sh", "babysit.sh") else ()
    r = tpu(script, *args, DRY_RUN="1", DATASET="imagenette")
    assert r.rc == 0, r.err
    assert r.calls == []
    lines = [shlex.split(x) for x in r.out.splitlines() if x.startswith("gcloud ")]
    assert lines
    # The printed lines are exactly what a real run calls (here: its first calls).
    real = tpu(
        script, *args, DATASET="imagenette", WAIT="0", scenario=[qr("ACTIVE"), probe("exit=0")]
    )
    n = {"create.sh": 1, "babysit.sh": 1}.get(script, len(real.calls))
    assert [x[1:] for x in lines[:n]] == real.calls[:n]


def test_dry_run_of_launch_is_the_exact_line(tpu):
    r = tpu("launch.sh", "--", *TRAIN_ARGS, DRY_RUN="1")
    assert [shlex.split(x) for x in r.out.splitlines()] == [["gcloud", *ssh("all", START_TRAIN)]]


def _functions(text):
    """{name: body} of the shell functions defined in `text` (`name() {` ... a `}` line)."""
    found = {}
    for m in re.finditer(r"^(\w+)\(\) \{[^\n]*\n(.*?)^\}$", text, re.M | re.S):
        found[m.group(1)] = m.group(2)
    return found


NOT_SETTINGS = {"HOME", "PATH", "BASH_SOURCE", "SECONDS", "TMPDIR", "IFS", "PIPESTATUS"}


def _settings_read(text):
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    names = set(re.findall(r"\$\{?[!#]?([A-Z][A-Z0-9_]*)", code))
    for arithmetic in re.findall(r"\(\((.*?)\)\)", code):
        names |= set(re.findall(r"\b([A-Z][A-Z0-9_]*)\b", arithmetic))
    return names - NOT_SETTINGS


def settings_read_by(script):
    """The UPPER_CASE names a script reads, itself or through the common.sh functions it calls."""
    common = _functions((SCRIPTS / "common.sh").read_text())
    text = (SCRIPTS / script).read_text()
    seen, todo, names = set(), [text], set()
    while todo:
        body = todo.pop()
        names |= _settings_read(body)
        for name, fbody in common.items():
            if name not in seen and re.search(rf"\b{name}\b", body):
                seen.add(name)
                todo.append(fbody)
    return names


def help_settings(text):
    section = text.split("Settings (environment variables) read by", 1)[1].split("Exit status")[0]
    return set(re.findall(r"^  ([A-Z][A-Z0-9_]*) ", section, re.M))


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_help_lists_exactly_the_settings_the_script_reads(script):
    p = subprocess.run(
        ["bash", str(SCRIPTS / script), "--help"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert p.returncode == 0 and p.stderr == ""
    read = settings_read_by(script)
    assert {"GCLOUD", "DRY_RUN", "ZONE", "TPU_NAME"} <= read
    assert help_settings(p.stdout) == read
    assert "Exit status:" in p.stdout


def test_help_of_common_and_the_worker_scripts():
    p = subprocess.run(
        ["bash", str(SCRIPTS / "common.sh"), "--help"], capture_output=True, text=True
    )
    assert p.returncode == 0
    table = {
        line.split("|")[0]
        for line in re.findall(r"^[A-Z_]+\|.*$", (SCRIPTS / "common.sh").read_text(), re.M)
    }
    assert help_settings(p.stdout) == table
    assert _settings_read((SCRIPTS / "common.sh").read_text()) <= table
    for script in ("worker_run.sh", "worker_setup.sh"):
        p = subprocess.run(
            ["bash", str(SCRIPTS / script), "--help"], capture_output=True, text=True
        )
        assert p.returncode == 0 and "Settings (environment variables)" in p.stdout
        assert _settings_read((SCRIPTS / script).read_text()) == set()
    # The scripts sent to a worker never kill by name.
    for path in SCRIPTS.glob("*.sh"):
        assert not re.search(r"\b(pkill|killall)\b|kill .*\$\(pgrep", path.read_text()), path


def test_readme_settings_table_and_the_flags_the_scripts_set():
    table = {
        line.split("|")[0]
        for line in re.findall(r"^[A-Z_]+\|.*$", (SCRIPTS / "common.sh").read_text(), re.M)
    }
    readme = (SCRIPTS / "README.md").read_text()
    assert set(re.findall(r"^\| `([A-Z_]+)` \|", readme, re.M)) == table
    # The flags that launch.sh / prepare_data.sh / worker_run.sh pass are defined by the programs.
    from absl import flags

    import jaxcnn.prepare
    import jaxcnn.train

    for module, names in [
        (jaxcnn.train, {"distributed", "data_dir", "workdir", "arch"}),
        (jaxcnn.prepare, {"dataset", "data_dir"}),
    ]:
        fv = flags.FlagValues()
        module.define_flags(fv)
        assert names <= set(fv), module


def test_shellcheck_clean():
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.sh"))
    p = subprocess.run([shellcheck(), "-x", *scripts], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stdout


# ---------------------------------------------------------------------------------------------
# Opt-in: the real gcloud parses every command line the scripts make.


@pytest.mark.skipif(
    os.environ.get("JAXCNN_TEST_REAL_GCLOUD") != "1" or shutil.which("gcloud") is None,
    reason="opt-in (JAXCNN_TEST_REAL_GCLOUD=1, with the Google Cloud CLI installed): ~1 s per line",
)
def test_real_gcloud_accepts_every_command_line(tpu, tmp_path):
    """Each distinct line goes to the real gcloud with an empty configuration (no account, no
    network): a line that parses fails with "no active account" (exit 1); a bad flag, value or
    duration fails before that (exit 2, "unrecognized arguments", "Unknown character ...")."""
    from concurrent.futures import ThreadPoolExecutor

    runs = [
        ("create.sh", (), {"SPOT": "1", "VALID_UNTIL": "6h", "WAIT": "0"}),
        ("create.sh", (), {"RESERVED": "1", "WAIT": "0", "ACCELERATOR_TYPE": "v5litepod-16"}),
        (
            "create.sh",
            (),
            {"MODE": "vm", "SPOT": "1", "WAIT": "0", "ACCELERATOR_TYPE": "v5litepod-8"},
        ),
        ("delete.sh", (), {"ASYNC": "1"}),
        ("delete.sh", (), {"MODE": "vm"}),
        ("status.sh", (), {"INTERNAL_IP": "1", "STRICT_HOST_KEY_CHECKING": "no"}),
        ("setup.sh", (), {}),
        ("launch.sh", ("--", *TRAIN_ARGS), {}),
    ]
    lines = []
    for script, args, settings in runs:
        scenario = [] if script == "create.sh" else [qr("ACTIVE"), probe("running")]
        for call in tpu(
            script, *args, scenario=scenario, PROJECT="verify-project", **settings
        ).calls:
            if call not in lines:
                lines.append(call)
    (tmp_path / "TMP").mkdir()
    for name in ("jaxcnn.tar.gz", "worker_setup.sh"):
        (tmp_path / "TMP" / name).write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
    }

    def check(argv):
        return argv, subprocess.run(
            ["gcloud", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    with ThreadPoolExecutor(4) as pool:
        for argv, p in pool.map(check, lines):
            assert p.returncode == 1 and "do not currently have an active account" in p.stderr, (
                argv,
                p.stderr,
            )
    assert len(lines) == 12  # 3 creates, 2 lists, 2 deletes, describe, scp, 3 ssh
