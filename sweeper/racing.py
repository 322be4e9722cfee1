"""The racing pruner: trials of one study race on the same samples, and a trial stops once it is clearly
behind the leader on those samples.

Every trial of a study trains on the study's sample stream, batch for batch (sft.data.stream), so two trials'
training losses over the same range of samples differ by their settings and their seeds, not by which
samples they drew. Each report a trial makes (sft.recipe.callbacks) carries the mean training loss since its
previous report and a fingerprint of the sample ids trained so far; the reporter keeps them in the
trial's user attr attrs.PAIRED_LOSSES, in the storage, so this pruner works on every storage, launcher
and host, and a resumed study races on from what the storage holds.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from runs import attrs

REFERENCE_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


@dataclass(frozen=True)
class Point:
    """A report's end, in samples seen: the summed loss of the samples before it, and their fingerprint."""

    loss_sum: float
    stream: str


@dataclass(frozen=True)
class RaceVerdict:
    """One trial against one reference on the samples both trained on: `worse_by` is the mean paired
    difference of their losses (positive: the trial is worse), `bound` what it must exceed to stop."""

    trial: int
    reference: int
    against: str  # "baseline" (an ablation remedy) or "leader"
    stopped_at: int  # samples seen
    worse_by: float
    bound: float
    pairs: int


def paired_curve(trial: FrozenTrial) -> dict[int, Point]:
    """The trial's reports as {samples seen: Point}, from 0 on. Intervals are chained in the order they
    were reported; one that starts before the chain's end (training resumed from a checkpoint, or a re-run
    that inherited the attrs of the trial it replaces) drops what came after its start."""
    chain: list[tuple[int, int, float, str]] = []
    for start, end, loss, stream in trial.user_attrs.get(attrs.PAIRED_LOSSES, []):
        while chain and chain[-1][1] > start:
            chain.pop()
        if (chain[-1][1] if chain else 0) != start or end <= start:
            continue  # a gap: the samples in it have no loss to pair
        chain.append((start, end, loss, stream))
    curve, total = {0: Point(0.0, "")}, 0.0
    for start, end, loss, stream in chain:
        total += loss * (end - start)
        curve[end] = Point(total, stream)
    return curve


def t_quantile(confidence: float, freedom: int) -> float:
    """Student's t quantile: exact for 1 and 2 degrees of freedom, else the Cornish-Fisher expansion
    (Abramowitz & Stegun 26.7.5), within 0.3% from 3 degrees of freedom on."""
    if freedom == 1:
        return math.tan(math.pi * (confidence - 0.5))
    if freedom == 2:
        return (2 * confidence - 1) / math.sqrt(2 * confidence * (1 - confidence))
    z = statistics.NormalDist().inv_cdf(confidence)
    terms = ((z**3 + z) / 4, (5 * z**5 + 16 * z**3 + 3 * z) / 96, (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384)
    return z + sum(term / freedom ** (power + 1) for power, term in enumerate(terms))


class RacingPruner(BasePruner):
    """Stops a trial whose training loss is higher than the leader's on the same samples by more than
    the noise allows: a one-sided confidence bound on the mean paired difference must clear `margin`.

    Use it when trials share one sample stream (every study this sweeper runs), the objective is a
    training loss, and the question is which setting wins: it spends little on settings that are
    plainly behind and does not stop one whose gap to the leader is within the bound. Its comparisons
    are paired, so the data's own noise cancels; what remains (how each setting takes each batch, and
    a seed when trials differ in it) is what the bound covers. It judges a trial on where it is now: a
    setting that would catch up late (a warmup as long as most of the budget) can be stopped before it
    does; raise min_samples (or recent) to wait for it.

    - The leader is recomputed at every report: among the other trials that trained on the same samples
      as far (same fingerprint there), the one this trial trails most. Trials on another stream (another
      trainer.shuffle, task.data_seed or data set) are never compared: they race within their own stream.
    - An ablation remedy races against the ablation's baseline only, never against another remedy, and
      the baseline is never stopped. A stopped trial keeps its partial curve; the decision is its user
      attr attrs.RACE (RaceVerdict's fields).
    - Paired intervals end where both trials reported (a batch of 16 reports half as often as one of 8);
      the last `recent` fraction of them is compared, so a slow starter is judged on where it is now.
    """

    def __init__(
        self,
        margin: float = 0.02,
        confidence: float = 0.95,
        min_pairs: int = 2,
        min_samples: int = 0,
        recent: float = 0.5,
    ) -> None:
        if margin < 0:
            raise ValueError(f"hydra.sweeper.pruner.margin must be >= 0 (a fraction of the leader's loss), got {margin}")
        if not 0.5 <= confidence < 1:
            raise ValueError(f"hydra.sweeper.pruner.confidence must be in [0.5, 1), got {confidence}")
        if min_pairs < 2:
            raise ValueError(f"hydra.sweeper.pruner.min_pairs must be >= 2 (a spread needs two differences), got {min_pairs}")
        if not 0 < recent <= 1:
            raise ValueError(f"hydra.sweeper.pruner.recent must be in (0, 1], got {recent}")
        self.margin = margin
        self.confidence = confidence
        self.min_pairs = min_pairs
        self.min_samples = min_samples
        self.recent = recent

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        decided = trial.user_attrs.get(attrs.RACE)
        if isinstance(decided, dict) and decided.get("trial") == trial.number:
            return True  # stopped already (another repeat asks again): decided once
        verdict = self.verdict(study, trial)
        if verdict is None or verdict.worse_by <= verdict.bound:
            return False
        study._storage.set_trial_user_attr(trial._trial_id, attrs.RACE, asdict(verdict))
        return True

    def verdict(self, study: optuna.Study, trial: FrozenTrial) -> RaceVerdict | None:
        """The trial against its leader (or baseline) now; None when there is none to race against yet."""
        own = paired_curve(trial)
        if max(own) < max(self.min_samples, 1):
            return None
        ablation = trial.user_attrs.get(attrs.ABLATION)
        if ablation == attrs.BASELINE:
            return None
        others = [t for t in study.get_trials(deepcopy=False, states=REFERENCE_STATES) if t.number != trial.number]
        if ablation is not None:
            others = [t for t in others if t.user_attrs.get(attrs.ABLATION) == attrs.BASELINE]
        against = "baseline" if ablation is not None else "leader"
        verdicts = [v for other in others if (v := self._race(trial.number, own, other, against)) is not None]
        return max(verdicts, key=lambda v: v.worse_by, default=None)

    def _race(self, number: int, own: dict[int, Point], other: FrozenTrial, against: str) -> RaceVerdict | None:
        theirs = paired_curve(other)
        end = max(own)
        if max(theirs) < end:
            return None  # not this far yet
        ends = sorted(set(own) & set(theirs))
        if own[ends[-1]].stream != theirs[ends[-1]].stream:
            return None  # another stream: not comparable by training loss
        start = max(e for e in ends if e <= (1 - self.recent) * ends[-1])
        window = [e for e in ends if e >= start]
        differences = [
            ((own[b].loss_sum - own[a].loss_sum) - (theirs[b].loss_sum - theirs[a].loss_sum)) / (b - a)
            for a, b in zip(window, window[1:])
        ]
        if len(differences) < self.min_pairs:
            return None
        level = (theirs[window[-1]].loss_sum - theirs[window[0]].loss_sum) / (window[-1] - window[0])
        # the spread from successive differences (von Neumann): a gap that shrinks or grows along the curve
        # is the trials' settings at work, not noise
        steps = [b - a for a, b in zip(differences, differences[1:])]
        spread = math.sqrt(sum(step * step for step in steps) / (2 * len(steps)) / len(differences))
        bound = self.margin * abs(level) + t_quantile(self.confidence, len(differences) - 1) * spread
        return RaceVerdict(number, other.number, against, end, statistics.fmean(differences), bound, len(differences))
