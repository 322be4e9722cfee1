"""The answer at a glance: the few sentences every output opens with.

Which setting won, by how much over the baseline in loss units and in seed spreads (a lead inside the
spread is "within noise", not a win); which setting is best by held-out loss across every group of
runs, since training losses on different data streams do not compare but eval losses on the same
held-out rows do; and which settings put runs on another data stream, named as settings rather than
as fingerprints.
"""
from __future__ import annotations

import statistics
from typing import Any

from analysis.ranking import SEED_KEYS, RankedRow, Ranking, pooled_spread
from analysis.settings import baseline_row, changed_params, override_value, overrides_text, remedy, setting_name
from analysis.streams import stream_key

# settings that choose which samples a run trains on, in which order (a separate data stream)
STREAM_SETTINGS = ("trainer.shuffle", "task.", "trainer.max_samples_seen", "trainer.epochs")


def mean_eval_loss(row: RankedRow) -> float | None:
    """The row's eval loss: the mean over its repeats that recorded one."""
    values = eval_losses(row)
    return statistics.fmean(values) if values else None


def eval_losses(row: RankedRow) -> list[float]:
    return [run.eval_loss for run in row.members if run.eval_loss is not None]


def label(row: RankedRow, ranking: Ranking, baseline: RankedRow | None) -> str:
    """A remedy with the overrides it changed ("lower_lr (optimizer.lr=0.001)"), or the changed settings."""
    name = remedy(row)
    if name is not None and (baseline is None or row is baseline):
        return name
    changed = overrides_text(changed_params(row, ranking, baseline))
    if name is None:
        return changed or setting_name(row, ranking, baseline, short=False)
    return f"{name} ({changed})" if changed else name


def in_spreads(gap: float, spread: float | None) -> str:
    """The gap in seed spreads and the call: within noise, or beyond it."""
    if not spread:
        return "not judged against noise: no repeated settings (hydra.sweeper.repeats=2 or more)"
    return f"{gap / spread:.1f} seed spreads: {'within noise' if gap <= spread else 'beyond noise'}"


def noise_of(rows: list[RankedRow], ranking: Ranking) -> float | None:
    """The seed spread a gap between these rows is judged by: theirs or the pooled one, whichever is larger
    (the rule of the ranking's "within noise" flags and of the remedies table)."""
    spreads = [spread for spread in (*(row.spread for row in rows), ranking.seed_spread) if spread is not None]
    return max(spreads) if spreads else None


def score(row: RankedRow, ranking: Ranking) -> str:
    """"smoothed loss 3.598 at 320 samples (mean of 2 seeds)"."""
    what = f"smoothed loss {row.value:.4g} at {ranking.budget:g} {ranking.unit}" if (
        ranking.by == "smoothed_loss" and ranking.budget is not None) else f"{ranking.by} {row.value:.4g}"
    return what + (f" (mean of {len(row.repeats)} seeds)" if len(row.repeats) > 1 else "")


def winner_line(ranking: Ranking, baseline: RankedRow | None) -> str | None:
    """The best row of group A, named by its remedy or changed settings, against the baseline (or the
    runner-up when group A has no baseline)."""
    ranked = [row for row in ranking.main_rows if row.rank is not None]
    if not ranked:
        return None
    best = ranked[0]
    sign = 1.0 if ranking.direction == "minimize" else -1.0
    below, above = ("below", "above") if sign > 0 else ("above", "below")
    if baseline is best:
        if len(ranked) == 1:
            return f"Winner: the baseline, {score(best, ranking)}; nothing else ranked yet."
        runner = ranked[1]
        gap = sign * (runner.value - best.value)
        return (f"Winner: the baseline, {score(best, ranking)}: no change beat it. The next, "
                f"{label(runner, ranking, baseline)}, is {gap:.3g} {above} it = {in_spreads(gap, noise_of([best, runner], ranking))}.")
    if baseline in ranked:
        gap = sign * (baseline.value - best.value)
        relative = f" ({100 * gap / abs(baseline.value):.1f}%)" if baseline.value else ""
        return (f"Winner: {label(best, ranking, baseline)}, {score(best, ranking)}, {gap:.3g}{relative} {below} the "
                f"baseline's {baseline.value:.4g} = {in_spreads(gap, noise_of([best, baseline], ranking))}.")
    if len(ranked) == 1:
        return f"Winner: {label(best, ranking, baseline)}, {score(best, ranking)}; the only setting ranked."
    runner = ranked[1]
    gap = sign * (runner.value - best.value)
    return (f"Winner: {label(best, ranking, baseline)}, {score(best, ranking)}, {gap:.3g} {below} the next, "
            f"{label(runner, ranking, baseline)} (no baseline run to compare with) = "
            f"{in_spreads(gap, noise_of([best, runner], ranking))}.")


def heldout_line(ranking: Ranking, baseline: RankedRow | None) -> str | None:
    """The best row by mean eval loss over every group whose eval loss was taken on the winner's
    held-out rows; None when no run has an eval loss or the ranking is already by eval loss."""
    if ranking.by == "eval_loss":
        return None
    ranked = [row for row in ranking.rows if row.rank is not None and mean_eval_loss(row) is not None]
    if not ranked:
        return None
    winner = next((row for row in ranking.main_rows if row.rank is not None), ranked[0])
    split = stream_key(winner.run, "eval_loss")
    comparable = [row for row in ranked if split is None or stream_key(row.run, "eval_loss") == split]
    best = min(comparable, key=mean_eval_loss)
    groups = sorted({row.group for row in comparable})
    across = f"groups {', '.join(groups[:-1])} and {groups[-1]} together" if len(groups) > 1 else "in group A"
    left_out = len(ranked) - len(comparable)
    other_split = f" ({left_out} settings evaluated on other held-out rows left out)" if left_out else ""
    seeds = f" (mean of {len(eval_losses(best))} seeds)" if len(eval_losses(best)) > 1 else ""
    if best is winner:
        return f"Best by held-out loss, {across}{other_split}: the winner too, eval_loss {mean_eval_loss(best):.4g}{seeds}."
    gap = mean_eval_loss(winner) - mean_eval_loss(best) if mean_eval_loss(winner) is not None else None
    spread = pooled_spread([eval_losses(row) for row in comparable])
    against = "" if gap is None else f", {gap:.3g} below the winner's {mean_eval_loss(winner):.4g} = {in_spreads(gap, spread)}"
    return (f"Best by held-out loss, {across}{other_split}: {label(best, ranking, baseline)} (group {best.group}), "
            f"eval_loss {mean_eval_loss(best):.4g}{seeds}{against}.")


def separating_settings(group: list[RankedRow], main: list[RankedRow]) -> dict[str, tuple[Any, list[Any]]]:
    """The settings every run of `group` shares and no run of group A has: {key: (its value, group A's
    values)}; only the settings that choose the data stream when some of them are among these."""
    runs = [run for row in group for run in row.members]
    main_runs = [run for row in main for run in row.members]
    found: dict[str, tuple[Any, list[Any]]] = {}
    for key in sorted({key for run in runs for key in run.params} - SEED_KEYS):
        values = {repr(run.params.get(key)): run.params.get(key) for run in runs}
        main_values = {repr(run.params[key]): run.params[key] for run in main_runs if key in run.params}
        if len(values) == 1 and all(key in run.params for run in runs) and main_values and not values.keys() & main_values.keys():
            found[key] = (next(iter(values.values())), list(main_values.values()))
    stream_settings = {key: value for key, value in found.items() if key.startswith(STREAM_SETTINGS)}
    return stream_settings or found


def group_lines(ranking: Ranking) -> list[str]:
    """For each group set apart from group A: the settings that put its runs on another data stream."""
    lines = []
    for group in ranking.groups[1:]:
        rows = [row for row in ranking.rows if row.group == group.label]
        size = f"{len(rows)} setting{'s' if len(rows) != 1 else ''}, {group.size} run{'s' if group.size != 1 else ''}"
        found = separating_settings(rows, ranking.main_rows)
        if not found:
            lines.append(f"Group {group.label} ({size}) is ranked apart: {group.reason}.")
            continue
        ours = " ".join(f"{key}={override_value(value)}" for key, (value, _) in found.items())
        theirs = " ".join(f"{key}={'|'.join(override_value(value) for value in values)}" for key, (_, values) in found.items())
        if ranking.by == "eval_loss":
            lines.append(f"Group {group.label} ({size}) was evaluated on other held-out rows, set by {ours} (group A: "
                         f"{theirs}): its eval losses do not compare with group A's.")
        else:
            lines.append(f"Group {group.label} ({size}) trained on another data stream, set by {ours} (group A: "
                         f"{theirs}): its training losses do not compare with group A's; compare by held-out loss.")
    return lines


def verdict_lines(ranking: Ranking) -> list[str]:
    """The sentences that open every output: the winner, the best by held-out loss, the groups set apart."""
    baseline = baseline_row(ranking)
    lines = [winner_line(ranking, baseline), heldout_line(ranking, baseline), *group_lines(ranking)]
    return [line for line in lines if line]

