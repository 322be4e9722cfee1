"""The report's figures as PNG files. Per-run curves reuse LLaMA-Factory's look (runs/loss_plot.py); the
comparison figures use the ranking's smoothing, so what is drawn is what was ranked."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.ranking import Ranking
from analysis.records import RunRecord, is_number
from analysis.sweep import Effect
from runs.loss_plot import plot_llamafactory_loss
from runs.smoothing import time_constant_ema

MAX_SCATTER_PARAMS = 6
ABLATION_FIGURES = ("value", "noise", "descent")


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def distinct_colours(count: int) -> list[Any]:
    """`count` colours no two alike: tab10 or tab20 while they suffice, else evenly spaced on turbo."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](index) for index in range(count)]
    if count <= 20:
        return [colormaps["tab20"](index) for index in range(count)]
    return [colormaps["turbo"](index / (count - 1)) for index in range(count)]


def save(figure: Any, out_path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(out_path, format="png", dpi=100)
    pyplot().close(figure)
    return out_path


def plot_run(run: RunRecord, out_path: str | Path) -> Path:
    """training_loss.png for one run: original + LLaMA-Factory-smoothed loss over steps."""
    steps = run.series.steps if len(run.series.steps) == len(run.series.loss) else list(range(1, len(run.series.loss) + 1))
    return plot_llamafactory_loss(steps, run.series.loss, out_path, title=f"training loss of {run.name}")


def plot_overlay(ranking: Ranking, top: int, out_path: str | Path) -> Path | None:
    """The top runs' ranking-smoothed curves on one axis, with the common budget marked."""
    figure = overlay_figure(ranking, top)
    return None if figure is None else save(figure, Path(out_path))


def overlay_figure(ranking: Ranking, top: int) -> Any:
    """The overlay as a matplotlib figure (None when there is nothing to draw), one colour per run."""
    rows = [row for row in ranking.main_rows if row.rank is not None and len(row.run.series.positions(ranking.unit)) >= 2][:top]
    if not rows or ranking.time_constant is None:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for row, colour in zip(rows, distinct_colours(len(rows)), strict=True):
        positions = row.run.series.positions(ranking.unit)
        losses = row.run.series.loss
        smoothed = losses if row.run.series.presmoothed else time_constant_ema(positions, losses, ranking.time_constant)
        axes.plot(positions, smoothed, label=f"#{row.rank} {row.name}", color=colour)
    axes.axvline(ranking.budget, color="grey", linestyle="--", label=f"budget {ranking.budget:g}")
    axes.set_xlabel(f"{ranking.unit} seen")
    axes.set_ylabel(f"loss (time constant {ranking.time_constant:g} {ranking.unit})")
    axes.set_title(f"top {len(rows)} run{'s' if len(rows) > 1 else ''}, smoothed as ranked")
    axes.legend(fontsize="small")
    return figure


def plot_param_scatter(ranking: Ranking, out_path: str | Path) -> Path | None:
    """One panel per varied param: its value against the ranked value."""
    rows = [row for row in ranking.rows if row.value is not None]
    keys = [key for key in ranking.varying_params if any(key in row.run.params for row in rows)][:MAX_SCATTER_PARAMS]
    if len(rows) < 2 or not keys:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, axes_list = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.4), squeeze=False)
    for axes, key in zip(axes_list[0], keys, strict=True):
        pairs = [(row.run.params.get(key), row.value) for row in rows if key in row.run.params]
        xs = [x for x, _ in pairs]
        if all(is_number(x) for x in xs):
            axes.scatter(xs, [y for _, y in pairs])
            if min(xs) > 0 and max(xs) / min(xs) >= 100:
                axes.set_xscale("log")
            else:
                axes.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=all(isinstance(x, int) for x in xs)))
        else:
            labels = sorted({str(x) for x in xs})
            axes.scatter([labels.index(str(x)) for x in xs], [y for _, y in pairs])
            axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize="small")
        axes.tick_params(axis="x", labelrotation=30)
        axes.set_xlabel(key)
        axes.set_ylabel(ranking.by)
    return save(figure, Path(out_path))


def plot_ablation(effects: list[Effect], out_path: str | Path, value_label: str) -> Path | None:
    """Relative change against the baseline, one bar per remedy and figure (the ranked value, named
    `value_label`, its noise and descent), one colour per figure, the seed spread as an error bar."""
    figure = ablation_figure(effects, value_label)
    return None if figure is None else save(figure, Path(out_path))


def ablation_figure(effects: list[Effect], value_label: str) -> Any:
    """The ablation chart as a matplotlib figure; None without remedies."""
    remedies = sorted({effect.remedy for effect in effects})
    if not remedies:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 0.6 * len(remedies) * len(ABLATION_FIGURES) + 1.5))
    height = 0.8 / len(ABLATION_FIGURES)
    colours = distinct_colours(len(ABLATION_FIGURES))
    for offset, (figure_name, colour) in enumerate(zip(ABLATION_FIGURES, colours, strict=True)):
        shown = {e.remedy: e for e in effects if e.figure == figure_name and e.relative is not None}
        if not shown:
            continue  # no legend entry for a figure no remedy has (noise of presmoothed trial values)
        ys = [index + offset * height for index, remedy in enumerate(remedies) if remedy in shown]
        bars = [shown[remedy] for remedy in remedies if remedy in shown]
        spreads = [100 * e.spread / abs(e.baseline) if e.spread is not None else 0.0 for e in bars]
        label = f"level ({value_label})" if figure_name == "value" else figure_name
        axes.barh(ys, [100 * e.relative for e in bars], height=height, label=label, color=colour,
                  xerr=spreads if any(spreads) else None, capsize=3)
    axes.set_yticks([index + height for index in range(len(remedies))], remedies)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("change against the baseline (%); error bars: seed spread")
    axes.set_title("one change at a time")
    axes.legend(fontsize="small")
    return figure
