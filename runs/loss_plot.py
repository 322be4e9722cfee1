"""The loss plot exactly as LLaMA-Factory draws it (extras/ploting.py), so its users see the picture
they know: the raw series in alpha 0.4 and the LLaMA-Factory-smoothed series in the same colour."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runs.smoothing import llamafactory_smooth

LLAMAFACTORY_COLOR = "#1f77b4"


def plot_llamafactory_loss(
    steps: Sequence[float], values: Sequence[float], out_path: str | Path, title: str, key: str = "loss"
) -> Path:
    """Write `training_{key}.png`-style figure to out_path (dpi 100, as LLaMA-Factory saves it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure()
    plt.plot(steps, values, color=LLAMAFACTORY_COLOR, alpha=0.4, label="original")
    plt.plot(steps, llamafactory_smooth(values), color=LLAMAFACTORY_COLOR, label="smoothed")
    plt.title(title)
    plt.xlabel("step")
    plt.ylabel(key)
    plt.legend()
    out_path = Path(out_path)
    figure.savefig(out_path, format="png", dpi=100)
    plt.close(figure)
    return out_path
