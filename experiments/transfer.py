"""The lecture's transfer-learning claims at small scale, on real data (issue #4).

Pretrain ResNet-8 on Fashion-MNIST classes 0-4, then learn classes 5-9 from 100 or 1000 labelled
images three ways: (a) from scratch, (b) frozen backbone + new head (linear probing), (c) full
fine-tuning; and the same three to scikit-learn's digits (resized to 28x28). Accuracy on the target's
whole test set is recorded against steps; the results go to experiments/results/transfer.md and
transfer.png.

    python experiments/transfer.py [--steps=300] [--eval_every=25]

Uses the library's pieces (models, steps, transfer.param_labels / stats_mask, optim) with an
in-memory loop, so that the subsets need no new dataset plumbing.
"""

import sys
import time
from pathlib import Path

from absl import app, flags

from jaxcnn import runtime

_STEPS = flags.DEFINE_integer("steps", 300, "Steps of each target run.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 25, "Evaluate every this many steps.")
_PRETRAIN_EPOCHS = flags.DEFINE_integer("pretrain_epochs", 2, "Epochs on classes 0-4.")
OUT = Path(__file__).parent / "results"


def arrays(name, split):
    import numpy as np

    from jaxcnn.data.sources import load_split
    from jaxcnn.data.tf import tfds

    batch = next(iter(tfds.as_numpy(load_split(name, split).batch(1 << 20))))
    x = batch["image"].astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    return x, batch["label"].astype(np.int32)


def main(argv):
    del argv
    runtime.configure_xla_cpu()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import jaxcnn
    from jaxcnn.config import get_config
    from jaxcnn.training.finetune import fine_tuning
    from jaxcnn.training.optim import make_optimizer
    from jaxcnn.training.program import build_program
    from jaxcnn.weights.loading import merge_variables

    t0 = time.time()
    xtr, ytr = arrays("fashion_mnist", "train")
    xte, yte = arrays("fashion_mnist", "test")
    mean, std = xtr.mean(), xtr.std()
    norm = lambda x: (x - mean) / std  # noqa: E731
    xtr, xte = norm(xtr), norm(xte)
    dx_tr, dy_tr = arrays("digits", "train")
    dx_te, dy_te = arrays("digits", "test")
    resize = lambda x: np.asarray(  # noqa: E731
        jax.image.resize(jnp.asarray(x), (len(x), 28, 28, 1), "bilinear")
    )
    dx_tr, dx_te = resize(dx_tr), resize(dx_te)
    dm, ds = dx_tr.mean(), dx_tr.std()
    dx_tr, dx_te = (dx_tr - dm) / ds, (dx_te - dm) / ds

    def run(x, y, xt, yt, steps, batch, lr, init=None, freeze="none", seed=0, eval_every=None):
        model = jaxcnn.create_model("resnet8", num_classes=int(y.max()) + 1)
        cfg = get_config()
        cfg.lr, cfg.freeze = lr, freeze
        shape = (1, *x.shape[1:])
        tuning = fine_tuning(model, shape, freeze)
        tx = make_optimizer(cfg, optax.cosine_decay_schedule(lr, max(steps, 1)), tuning.labels)
        program = build_program(
            model, tx, seed=seed, input_shape=shape, frozen_stats=tuning.frozen_stats
        )
        state = program.init()
        if init is not None:
            merged, _ = merge_variables(
                {"params": state.params, "batch_stats": state.batch_stats}, init
            )
            state = state.replace(
                params=program.replicate(merged["params"]),
                batch_stats=program.replicate(merged["batch_stats"]),
            )

        def accuracy(state):
            correct = 0.0
            for i in range(0, len(xt), 1000):
                b = {"image": xt[i : i + 1000], "label": yt[i : i + 1000]}
                b["mask"] = np.ones(len(b["label"]), np.float32)
                correct += float(program.eval(state, b)["correct"])
            return correct / len(xt)

        rng = np.random.default_rng(seed)
        curve = []
        for s in range(1, steps + 1):
            idx = rng.choice(len(x), size=min(batch, len(x)), replace=False)
            state, _ = program.train(state, {"image": x[idx], "label": y[idx]})
            if eval_every and (s % eval_every == 0 or s == steps):
                curve.append((s, accuracy(state)))
        return state, curve

    # Pretraining on classes 0-4.
    src = ytr < 5
    pre_steps = max(1, _PRETRAIN_EPOCHS.value * int(src.sum()) // 128)
    pre, _ = run(xtr[src], ytr[src], xte[yte < 5], yte[yte < 5], pre_steps, 128, 0.1)
    source = {"params": pre.params, "batch_stats": pre.batch_stats}
    print(f"pretrained on classes 0-4: {pre_steps} steps ({time.time() - t0:.0f} s)", flush=True)

    tgt_tr, tgt_te = ytr >= 5, yte >= 5
    xt_all, yt_all = xtr[tgt_tr], ytr[tgt_tr] - 5
    results = {}
    steps, every = _STEPS.value, _EVAL_EVERY.value
    targets = []
    for n in (100, 1000):
        idx = np.random.default_rng(n).choice(len(xt_all), n, replace=False)
        targets.append(
            (f"FMNIST 5-9, {n} labels", xt_all[idx], yt_all[idx], xte[tgt_te], yte[tgt_te] - 5)
        )
    targets.append(("digits, 1437 labels", dx_tr, dy_tr, dx_te, dy_te))
    for title, x, y, xt, yt in targets:
        for how, init, freeze, lr in (
            ("scratch", None, "none", 0.05),
            ("frozen backbone", source, "backbone", 0.05),
            ("fine-tune", source, "none", 0.01),
        ):
            _, curve = run(x, y, xt, yt, steps, 32, lr, init, freeze, seed=1, eval_every=every)
            results[(title, how)] = curve
            print(f"{title:24s} {how:16s} final {curve[-1][1]:.3f}", flush=True)
    wall = time.time() - t0
    write(results, steps, pre_steps, wall)
    return 0


def write(results, steps, pre_steps, wall):
    import platform

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    titles = sorted({t for t, _ in results}, key=lambda t: (t.startswith("digits"), len(t), t))
    fig, axes = plt.subplots(1, len(titles), figsize=(5 * len(titles), 4), sharey=True)
    for ax, title in zip(axes, titles, strict=True):
        for how in ("scratch", "frozen backbone", "fine-tune"):
            s, a = zip(*results[(title, how)], strict=True)
            ax.plot(s, a, label=how)
        ax.set_title(title)
        ax.set_xlabel("steps (batch 32)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend()
    fig.savefig(OUT / "transfer.png", dpi=90, bbox_inches="tight")
    lines = [
        "# Transfer learning at small scale (issue #4)",
        "",
        f"`python experiments/transfer.py --steps={steps}`: ResNet-8 pretrained on Fashion-MNIST "
        f"classes 0-4 ({pre_steps} steps of 128), then {steps} steps of batch 32 on each target; "
        f"test accuracy on the target's whole test split. Machine: {platform.processor() or 'CPU'} "
        f"({platform.machine()}), the 2-core development VM; wall time {wall / 60:.1f} min. "
        "One seed per cell: differences of a point or two are noise.",
        "",
        "| target | how | "
        + " | ".join(f"step {s}" for s, _ in results[(titles[0], "scratch")])
        + " |",
        "|---|---|" + "---:|" * len(results[(titles[0], "scratch")]),
    ]
    for title in titles:
        for how in ("scratch", "frozen backbone", "fine-tune"):
            accs = " | ".join(f"{a:.3f}" for _, a in results[(title, how)])
            lines.append(f"| {title} | {how} | {accs} |")
    lines += ["", "![accuracy against steps](transfer.png)", ""]
    (OUT / "transfer.md").write_text("\n".join(lines))
    print(f"wrote {OUT / 'transfer.md'} and transfer.png", file=sys.stderr)


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
