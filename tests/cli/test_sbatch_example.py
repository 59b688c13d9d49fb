"""docs/slurm/train.sbatch, the multi-node GPU example: it parses (bash -n, shellcheck), its #SBATCH
directives are well-formed and agree with each other (one task per GPU), and its srun line runs
`python -m jaxcnn.train --distributed` with flags that the trainer defines. No cluster needed.
"""

import inspect
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from absl import flags
from helpers import shellcheck

ROOT = Path(__file__).resolve().parents[2]
SBATCH = ROOT / "docs" / "slurm" / "train.sbatch"

# Long options of sbatch(1) that the example may use, each with the form of its value (None: a
# flag without a value). From the sbatch manual page.
TIME = r"(\d+|\d+:\d{2}|\d+:\d{2}:\d{2}|\d+-\d+|\d+-\d+:\d{2}|\d+-\d+:\d{2}:\d{2})"
OPTIONS = {
    "job-name": r"[\w.-]+",
    "nodes": r"\d+(-\d+)?",
    "ntasks-per-node": r"\d+",
    "gpus-per-node": r"(\w+:)?\d+",
    "cpus-per-task": r"\d+",
    "time": TIME,
    "signal": r"([RB]:)?(\d+|[A-Z0-9]+)(@\d+)?",
    "requeue": None,
    "open-mode": r"append|truncate",
    "output": r"[\w%./-]+",
    "error": r"[\w%./-]+",
    "partition": r"[\w,.-]+",
    "account": r"[\w.-]+",
    "qos": r"[\w.-]+",
    "mem": r"\d+[KMGT]?",
    "exclusive": None,
    "constraint": r"\S+",
}


def lines():
    return SBATCH.read_text().splitlines()


def directives():
    """{option: value} of the #SBATCH lines, checked to come before the first command."""
    found, commands_started = {}, False
    for line in lines():
        stripped = line.strip()
        if stripped.startswith("#SBATCH"):
            # sbatch stops reading directives at the first command of the script.
            assert not commands_started, f"#SBATCH after the first command: {line}"
            m = re.fullmatch(r"#SBATCH --([a-z-]+)(?:=(\S+))?", stripped)
            assert m, f"not a well-formed directive: {line!r}"
            found[m.group(1)] = m.group(2)
        elif stripped and not stripped.startswith("#"):
            commands_started = True
    return found


def test_it_parses():
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0
    assert lines()[0] == "#!/bin/bash"


def test_shellcheck_clean():
    p = subprocess.run([shellcheck(), str(SBATCH)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout


def test_directives_are_well_formed_and_one_task_per_gpu():
    found = directives()
    for option, value in found.items():
        assert option in OPTIONS, f"--{option} is not one of the sbatch options this test knows"
        form = OPTIONS[option]
        if form is None:
            assert value is None, f"--{option} takes no value"
        else:
            assert value is not None and re.fullmatch(form, value), f"--{option}={value}"
    assert {"nodes", "ntasks-per-node", "gpus-per-node", "time"} <= set(found)
    # JAX gives each process the GPU numbered SLURM_LOCALID: as many tasks on a node as GPUs.
    gpus = int(found["gpus-per-node"].rsplit(":", 1)[-1])
    assert int(found["ntasks-per-node"]) == gpus
    assert not {"gpus-per-task", "gpu-bind", "ntasks"} & set(found)


def srun_words():
    """The srun command (continuation lines joined), up to `||`."""
    text = "\n".join(lines()).replace("\\\n", " ")
    (line,) = [x for x in text.splitlines() if x.strip().startswith("srun ")]
    words = shlex.split(line)
    return words[: words.index("||")] if "||" in words else words


def test_srun_runs_the_distributed_trainer_with_flags_it_defines():
    words = srun_words()
    assert words[0] == "srun"
    rest = words[1:]
    while rest[0].startswith("-"):  # srun's own options
        rest = rest[1:]
    assert rest[:4] == ["python", "-m", "jaxcnn.train", "--distributed"]
    import jaxcnn.train

    fv = flags.FlagValues()
    jaxcnn.train.define_flags(fv)
    given = {}
    for arg in rest[3:]:
        m = re.fullmatch(r"--([a-z_]+)(?:=(.+))?", arg)
        assert m, f"not a --flag[=value]: {arg!r}"
        assert m.group(1) in fv, f"--{m.group(1)} is not a flag of jaxcnn.train"
        given[m.group(1)] = m.group(2)
    assert {"arch", "workdir", "data_dir"} <= set(given)
    # The coordinator, process count and id come from SLURM: passing them would override it.
    assert not {"coordinator_address", "num_processes", "process_id"} & set(given)
    global_batch = int(given["batch_size"])
    d = directives()
    assert global_batch % (int(d["nodes"]) * int(d["ntasks-per-node"])) == 0


def test_jax_reads_the_slurm_variables_the_example_names(monkeypatch):
    """The comment's account of JAX's SLURM detection, checked against the installed JAX."""
    from jax._src import clusters

    env = {
        "SLURM_JOB_ID": "1234",
        "SLURM_STEP_NODELIST": "gpu[001-002]",
        "SLURM_NTASKS": "16",
        "SLURM_PROCID": "9",
        "SLURM_LOCALID": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("JAX_COORDINATOR_PORT", raising=False)
    # A private function whose signature changes with JAX: every argument unset (None), but for
    # a timeout (seconds) where the version has one.
    detect = clusters.ClusterEnv.auto_detect_unset_distributed_params
    params = inspect.signature(detect).parameters
    kwargs = {name: (300 if "timeout" in name else None) for name in params}
    if not {"coordinator_address", "num_processes", "process_id"} <= set(kwargs):
        pytest.skip(f"jax._src.clusters changed: {list(params)}")
    found = detect(**kwargs)
    assert tuple(found) == (f"gpu001:{61440 + 1234 % 4096}", 16, 9, [1])
    text = SBATCH.read_text()
    for name in env:
        assert name in text
    assert "61440 + SLURM_JOB_ID % 4096" in text
