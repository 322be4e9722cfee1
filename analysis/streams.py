"""Which runs may be compared by their training loss: only runs that trained on the same samples.

A training loss is measured on the samples a run trained on. Two runs that saw different samples (another
order, another split, a different budget) differ for that reason alone, so their smoothed training
losses are not ranked against each other. result.json records the stream: `data_fingerprint` (the
sample ids trained on, in order), `samples_trained`, `split_fingerprint` (the held-out rows) and
`data_seed`. Eval losses compare across streams, but only on the same held-out rows.

Runs are put into groups of comparable runs; the largest is group A, the one the ranking is about.
Each other group is ranked only among itself, with the reason in words. Runs that record no
fingerprint (older runs, LLaMA-Factory or W&B runs, trials without their run dir) cannot be checked:
alone they are assumed comparable and the output says so; beside fingerprinted runs they form a group of
their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from string import ascii_uppercase

from analysis.records import RunRecord
from runs.result import DATA_FINGERPRINT, DATA_SEED, SAMPLES_TRAINED, SHUFFLE, SPLIT_FINGERPRINT


SHOWN_DIGITS = 10


@dataclass
class Group:
    """Runs that compare with each other; why they do not compare with group A (None for group A);
    notes about the group, and a flag per run (keyed by id(run)) about how its stream was matched."""

    label: str
    runs: list[RunRecord]
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    flags: dict[int, str] = field(default_factory=dict)


def recorded(run: RunRecord, key: str) -> object:
    """A stream field from the run's result.json, else from its trial's user attrs."""
    for source in (run.result or {}, run.attrs):
        if source.get(key) is not None:
            return source[key]
    return None


def short(value: object) -> str:
    return str(value)[:SHOWN_DIGITS]


def stream_key(run: RunRecord, by: str) -> tuple | None:
    """What two runs must share to be compared by `by`; None when the run does not record it.

    eval_loss: the held-out rows. Anything else (a training figure): the samples trained on and their
    number. A run stopped early (pruned, failed) trained on a prefix of its stream, so its fingerprint
    cannot equal a finished run's: it is keyed by its split, data seed and trainer.shuffle, which fix the
    stream (shuffled or in file order)."""
    if by == "eval_loss":
        split = recorded(run, SPLIT_FINGERPRINT)
        return None if split is None else ("split", split)
    fingerprint = recorded(run, DATA_FINGERPRINT)
    if fingerprint is None:
        return None
    if run.status != "completed":
        return prefix_key(run)
    return ("stream", fingerprint, recorded(run, SAMPLES_TRAINED))


def prefix_key(run: RunRecord) -> tuple:
    return ("prefix", recorded(run, SPLIT_FINGERPRINT), recorded(run, DATA_SEED), recorded(run, SHUFFLE))


def describe_key(key: tuple) -> str:
    kind, *values = key
    if kind == "split":
        return f"held-out split {short(values[0])}"
    if kind == "prefix":
        order = {True: ", shuffled", False: ", in file order"}.get(values[2], "")
        return f"a run stopped early on split {short(values[0])}, data seed {values[1]}{order}"
    return f"data stream {short(values[0])}, {values[1]} samples trained"


def prefix_of(key: tuple | None, run: RunRecord) -> tuple | None:
    """The key a finished run gives the runs stopped early on its stream."""
    if key is None or key[0] != "stream":
        return None
    return prefix_key(run)


def comparable_groups(runs: list[RunRecord], by: str) -> list[Group]:
    """The runs split into groups that compare by `by`, largest first (group A)."""
    keys = {id(run): stream_key(run, by) for run in runs}
    streams_of: dict[tuple, set[tuple]] = {}
    for run in runs:
        prefix = prefix_of(keys[id(run)], run)
        if prefix is not None:
            streams_of.setdefault(prefix, set()).add(keys[id(run)])
    notes: dict[int, str] = {}
    for run in runs:
        key = keys[id(run)]
        if key is not None and len(streams_of.get(key, ())) == 1:
            keys[id(run)] = next(iter(streams_of[key]))
            notes[id(run)] = f"stopped early ({run.status}): compared as on the stream of its split, data seed and shuffle"
    if all(key is None for key in keys.values()):
        what = "held-out split (split_fingerprint)" if by == "eval_loss" else "training samples (data_fingerprint)"
        group = Group("A", list(runs))
        group.notes.append(
            f"no run records its {what} (older runs, LLaMA-Factory or W&B runs): all are assumed to have "
            "used the same data, which is not checked"
        )
        return [group]
    buckets: dict[tuple | None, list[RunRecord]] = {}
    for run in runs:
        buckets.setdefault(keys[id(run)], []).append(run)
    ordered = sorted(buckets.items(), key=lambda item: (item[0] is None, -len(item[1])))
    main_key = ordered[0][0]
    groups = []
    for label, (key, members) in zip(ascii_uppercase, ordered):
        group = Group(label, members, flags={id(run): notes[id(run)] for run in members if id(run) in notes})
        if key != main_key:
            group.reason = set_apart_reason(key, main_key, by)
        groups.append(group)
    return groups


def set_apart_reason(key: tuple | None, main_key: tuple, by: str) -> str:
    """Why a group is not ranked against group A, in words."""
    if key is None:
        field_name = SPLIT_FINGERPRINT if by == "eval_loss" else DATA_FINGERPRINT
        return (f"these runs record no {field_name} (older runs, LLaMA-Factory or W&B runs), so it cannot be "
                "checked that they used group A's data; ranked only among themselves")
    if by == "eval_loss":
        return (f"evaluated on {describe_key(key)}, not on group A's {describe_key(main_key)}: eval losses "
                "on different held-out rows do not compare; ranked only among themselves")
    return (f"trained on {describe_key(key)}, not on group A's {describe_key(main_key)}: training losses "
            "measured on different samples do not compare, so they are ranked only among themselves; "
            "compare across groups by held-out loss (--by eval_loss)")
