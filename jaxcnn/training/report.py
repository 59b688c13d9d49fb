"""What a training run tells its user: one progress bar and a few lines, on process 0 only.

Every other process of a multi-host job prints nothing, so a pod's log reads like one machine's.
"""

from typing import Any

from tqdm import tqdm


class Reporter:
    """Prints the run's progress (a tqdm bar) and its events, when `enabled`.

    Args:
        enabled: True on process 0; the others are silent.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar: tqdm | None = None

    def say(self, line: str) -> None:
        """One line of news (written above the bar while it is open)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, flush=True)

    def start(self, total: int, initial: int, desc: str) -> None:
        """Opens the progress bar of `total` steps, `initial` of them already done."""
        self._bar = tqdm(
            total=total,
            initial=initial,
            disable=not self.enabled,
            unit="step",
            dynamic_ncols=True,
            desc=desc,
        )

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def train_metrics(self, loss: float, accuracy: float, images_per_sec: float) -> None:
        if self._bar is not None:
            self._bar.set_postfix(
                loss=f"{loss:.4f}", acc=f"{accuracy:.3f}", img_s=f"{images_per_sec:.0f}"
            )

    def evaluated(self, step: int, epoch: float, result: dict[str, Any]) -> None:
        ema = ""
        if "ema_accuracy" in result:
            ema = f"; EMA {result['ema_accuracy']:.4f}, loss {result['ema_loss']:.4f}"
        self.say(
            f"step {step} (epoch {epoch:.2f}): eval accuracy {result['accuracy']:.4f}, "
            f"loss {result['loss']:.4f}{ema}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
