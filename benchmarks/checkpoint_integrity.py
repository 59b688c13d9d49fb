"""What checkpoint checksums cost: save and restore of a ResNet-50 train state, with and without.

    python benchmarks/checkpoint_integrity.py [--arch=resnet50] [--rounds=5] [--dir=/tmp/x]

The state is what the trainer saves (parameters, BatchNorm statistics, SGD momentum, step, rng),
built by `jaxcnn.training.steps.init_train_state`. Each round saves one checkpoint with checksums
and one without (alternating which goes first), waits for the asynchronous write to commit, and
restores each onto the state's own structure (the trainer's resume path). Printed: the median of
each, in seconds, and the cost of the checksums as a ratio: `blocking` is the time `save` takes
before training can go on (the checksums are computed there, the write continues in the
background), `save` until the checkpoint is committed, `restore` until the arrays are back and
verified.
"""

import argparse
import shutil
import statistics
import tempfile
import time

import jax
import optax

from jaxcnn import create_model, get_model_info, rundir
from jaxcnn.training.steps import init_train_state


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    args = p.parse_args()

    info = get_model_info(args.arch)
    size = max(info.min_image_size, 32)  # the parameter shapes do not depend on it
    state = init_train_state(
        create_model(info.name), optax.sgd(0.1, momentum=0.9), 0, (1, size, size, 3)
    )
    tree = state.as_checkpoint()
    nbytes = sum(x.nbytes for x in jax.tree.leaves(tree))
    root = args.dir or tempfile.mkdtemp(prefix="jaxcnn-ckpt-bench-")
    kinds = ("blocking", "save", "restore")
    times = {(kind, on): [] for kind in kinds for on in (True, False)}
    for r in range(args.rounds):
        for on in (True, False) if r % 2 == 0 else (False, True):
            workdir = f"{root}/{'on' if on else 'off'}-{r}"
            ckpt = rundir.Checkpointer(workdir, keep=1, checksums=on)
            t0 = time.perf_counter()
            ckpt.save(1, tree, {"epoch": 0.0})
            times["blocking", on].append(time.perf_counter() - t0)  # what a train step waits
            ckpt.wait()
            times["save", on].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            restored, _ = ckpt.restore(tree)
            jax.block_until_ready(restored)
            times["restore", on].append(time.perf_counter() - t0)
            ckpt.close()
            shutil.rmtree(workdir)
    print(f"{info.name}: {nbytes / 2**20:.0f} MiB of state, {args.rounds} rounds (median s)")
    for kind in kinds:
        on, off = (statistics.median(times[kind, x]) for x in (True, False))
        print(f"  {kind:8s} with checksums {on:.3f}  without {off:.3f}  ratio {on / off:.2f}x")
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
