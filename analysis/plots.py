"""The report's figures as PNG files. Per-run curves reuse LLaMA-Factory's look (runs/loss_plot.py); the
comparison figures use the ranking's smoothing, so what is drawn is what was ranked."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.ranking import Ranking
from analysis.records import RunRecord, is_number
from analysis.settings import baseline_row, override_value, setting_name, shown_params
from analysis.sweep import Effect
from runs.loss_plot import plot_llamafactory_loss
from runs.smoothing import time_constant_ema

SCATTER_COLUMNS = 4  # panels per row of the parameter scatter
ABLATION_FIGURES = ("value", "noise", "descent")
FIGURE_DIRECTIONS = {"noise": "minimize", "descent": "maximize"}  # the value's is the ranking's
OVERLAY_SKIPPED_FRACTION = 0.5  # the overlay's y-axis spans the curves from this fraction of the budget on
BETTER, WORSE, WITHIN_NOISE = "tab:green", "tab:red", "tab:grey"


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
    figure.savefig(out_path, format="png", dpi=100, bbox_inches="tight")  # keeps a legend placed beside the axes
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
    """The overlay as a matplotlib figure (None when there is nothing to draw), one colour per run.
    The y-axis spans the smoothed curves over the second half of the budget: the first losses of a run
    lie far above where the runs differ, and would squeeze the curves that matter into a few pixels."""
    rows = [row for row in ranking.main_rows if row.rank is not None and len(row.run.series.positions(ranking.unit)) >= 2][:top]
    if not rows or ranking.time_constant is None:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(9, 5))
    shown: list[float] = []
    for row, colour in zip(rows, distinct_colours(len(rows)), strict=True):
        positions = row.run.series.positions(ranking.unit)
        losses = row.run.series.loss
        smoothed = losses if row.run.series.presmoothed else time_constant_ema(positions, losses, ranking.time_constant)
        axes.plot(positions, smoothed, label=f"#{row.rank} {row_label(row, ranking)}", color=colour)
        start = OVERLAY_SKIPPED_FRACTION * (ranking.budget or positions[-1])
        shown.extend(value for position, value in zip(positions, smoothed, strict=True) if position >= start)
    if shown and max(shown) > min(shown):
        margin = 0.05 * (max(shown) - min(shown))
        axes.set_ylim(min(shown) - margin, max(shown) + margin)
    axes.axvline(ranking.budget, color="grey", linestyle="--", label=f"budget {ranking.budget:g}")
    axes.set_xlabel(f"{ranking.unit} seen")
    axes.set_ylabel(f"smoothed loss (time constant {ranking.time_constant:g} {ranking.unit})")
    axes.set_title(f"top {len(rows)} of group A, smoothed as ranked; the y-axis spans the curves from "
                   f"{100 * OVERLAY_SKIPPED_FRACTION:.0f}% of the budget on", fontsize="medium")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def row_label(row: Any, ranking: Ranking) -> str:
    """A legend's name for a row: its remedy or changed settings, as the tables name it."""
    return setting_name(row, ranking, baseline_row(ranking))


def plot_param_scatter(ranking: Ranking, out_path: str | Path) -> Path | None:
    """One panel per varied param: its value against the ranked value."""
    figure = param_scatter_figure(ranking)
    return None if figure is None else save(figure, Path(out_path))


def param_scatter_figure(ranking: Ranking) -> Any:
    """Every varied param but the seed (it only tells repeats apart) in a panel of its own, one colour
    per group of runs (groups on different data streams do not compare by training loss); None with
    fewer than two ranked rows or no varied param."""
    rows = [row for row in ranking.rows if row.value is not None]
    keys = [key for key in shown_params(ranking) if any(key in row.run.params for row in rows)]
    if len(rows) < 2 or not keys:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    columns = min(len(keys), SCATTER_COLUMNS)
    lines = -(-len(keys) // columns)
    figure, axes_grid = plt.subplots(lines, columns, figsize=(3.4 * columns, 3.0 * lines), squeeze=False, sharey=True)
    groups = sorted({row.group for row in rows})
    colours = dict(zip(groups, distinct_colours(len(groups)), strict=True))
    for axes, key in zip(axes_grid.flat, keys):
        pairs = [(row.run.params.get(key), row.value, row.group) for row in rows if key in row.run.params]
        xs = [x for x, _, _ in pairs]
        numeric = all(is_number(x) for x in xs)
        labels = [] if numeric else sorted({override_value(x) for x in xs})
        for group in groups:
            chosen = [(x, y) for x, y, g in pairs if g == group]
            axes.scatter([x if numeric else labels.index(override_value(x)) for x, _ in chosen], [y for _, y in chosen],
                         color=colours[group], label=f"group {group}")
        if not numeric:
            axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize="small")
        elif min(xs) > 0 and max(xs) / min(xs) >= 100:
            axes.set_xscale("log")
        else:
            axes.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=all(isinstance(x, int) for x in xs)))
            axes.tick_params(axis="x", labelrotation=30)
        axes.set_xlabel(key)
    for axes in axes_grid[:, 0]:
        axes.set_ylabel(ranking.by)
    for axes in list(axes_grid.flat)[len(keys):]:
        axes.set_visible(False)
    if len(groups) > 1:
        axes_grid[0, 0].legend(fontsize="small")
    left_out = [key for key in ranking.varying_params if key not in keys]
    title = f"each varied parameter against {ranking.by}"
    if left_out:
        title += f" ({', '.join(left_out)} left out: it tells repeats apart)"
    if len(groups) > 1:
        title += "; groups on other data streams compare only within themselves"
    figure.suptitle(title, fontsize="medium")
    return figure


def plot_ablation(effects: list[Effect], out_path: str | Path, value_label: str, direction: str = "minimize") -> Path | None:
    """Relative change against the baseline, one panel per figure (the ranked value, named `value_label`,
    its noise and descent), each with the direction that is better."""
    figure = ablation_figure(effects, value_label, direction)
    return None if figure is None else save(figure, Path(out_path))


def ablation_figure(effects: list[Effect], value_label: str, direction: str = "minimize") -> Any:
    """The ablation chart as a matplotlib figure; None without remedies. A panel per figure, since the
    level and the noise are better lower and the descent higher: a bar is green where the remedy helped,
    red where it hurt, grey within noise, with the seed spread as its error bar when there are repeats."""
    shown_figures = [name for name in ABLATION_FIGURES if any(e.figure == name and e.relative is not None for e in effects)]
    remedies = sorted({effect.remedy for effect in effects})
    if not remedies or not shown_figures:
        return None
    plt = pyplot()
    figure, axes_list = plt.subplots(1, len(shown_figures), figsize=(4.2 * len(shown_figures), 0.45 * len(remedies) + 2.2),
                                     squeeze=False, sharey=True)
    spread_drawn = spread_missing = False
    for axes, figure_name in zip(axes_list[0], shown_figures, strict=True):
        wanted = direction if figure_name == "value" else FIGURE_DIRECTIONS[figure_name]
        shown = {e.remedy: e for e in effects if e.figure == figure_name and e.relative is not None}
        bars = [shown.get(remedy) for remedy in remedies]
        widths = [0.0 if e is None else 100 * e.relative for e in bars]
        colours = [bar_colour(e, wanted) for e in bars]
        axes.barh(range(len(remedies)), widths, color=colours, height=0.6)
        with_spread = [(index, e) for index, e in enumerate(bars) if e is not None and e.spread is not None and e.baseline]
        spread_missing |= len(with_spread) < sum(e is not None for e in bars)
        if with_spread:
            spread_drawn = True
            axes.errorbar([widths[index] for index, _ in with_spread], [index for index, _ in with_spread],
                          xerr=[100 * e.spread / abs(e.baseline) for _, e in with_spread], fmt="none", ecolor="black", capsize=3)
        axes.axvline(0, color="black", linewidth=0.8)
        name = f"level ({value_label})" if figure_name == "value" else figure_name
        axes.set_title(f"{name}\n{'lower' if wanted == 'minimize' else 'higher'} is better", fontsize="medium")
        axes.set_xlabel("change against the baseline (%)")
    axes_list[0, 0].set_yticks(range(len(remedies)), remedies)
    axes_list[0, 0].invert_yaxis()
    bars_note = "error bars: ± seed spread" if spread_drawn else "no error bars: no repeats to give a seed spread"
    if spread_drawn and spread_missing:
        bars_note += " (none where no repeats)"
    figure.suptitle(f"one change at a time: green helped, red hurt, grey within noise; {bars_note}", fontsize="medium")
    return figure


def bar_colour(effect: Effect | None, wanted: str) -> str:
    if effect is None or effect.within_noise or effect.change == 0:
        return WITHIN_NOISE
    helped = (effect.change < 0) == (wanted == "minimize")
    return BETTER if helped else WORSE
