"""The search space: `hydra.sweeper.params` and sweep overrides from the command line, as Optuna objects.

The syntax is the official hydra-optuna-sweeper's, so its users switch by changing one line:
  choice(a, b, c)            -> categorical (also `key=a,b,c` on the command line)
  range(start, stop[, step]) -> int (or float) with step; stop is excluded, as in Hydra and the official plugin
  interval(low, high)        -> uniform float (Hydra makes both ends floats)
  int(interval(low, high))   -> uniform int
  tag(log, interval(l, h))   -> log-uniform (also tag(log, int(interval(l, h))))
  anything else              -> a fixed value, passed to every trial unchanged
Every mistake is reported here, naming the parameter, before a trial runs.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from sweeper.errors import SweepError
from sweeper.overrides import override_key, render_override

SUPPORTED_TAGS = ("log",)
SUPPORTED_FORMS = (
    "choice(a, b), range(low, high[, step]), interval(low, high), int(interval(low, high)), "
    "tag(log, interval(low, high))"
)


class SearchSpaceError(SweepError):
    """A parameter of the search space that cannot become an Optuna distribution."""


@dataclass
class SearchSpace:
    """What each trial gets: sampled `distributions` plus `fixed` overrides (same for every trial)."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def grid(self) -> dict[str, list[Any]]:
        """The space as GridSampler's search_space; only finite distributions qualify."""
        grid: dict[str, list[Any]] = {}
        for name, distribution in self.distributions.items():
            if isinstance(distribution, CategoricalDistribution):
                grid[name] = list(distribution.choices)
            elif isinstance(distribution, IntDistribution) and not distribution.log:
                grid[name] = list(range(distribution.low, distribution.high + 1, distribution.step))
            else:
                raise SearchSpaceError(
                    f"hydra/sweeper/lorasweep_sampler=grid needs finite parameters, but {name} is {distribution}; "
                    f"use choice(...) or range(...) for it, or another sampler"
                )
        return grid


def flatten_params(params: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """`{"optimizer": {"lr": ...}}` (from a dotted command-line key) and `{"optimizer.lr": ...}` (a
    YAML key) both become `optimizer.lr`; a later entry wins, so the command line beats the file."""
    flat: dict[str, Any] = {}
    for key, value in (params or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def build_search_space(params: Mapping[str, Any] | None, arguments: list[str]) -> SearchSpace:
    """The space from the config's params and the sweep's command-line arguments (which win)."""
    parser = OverridesParser.create()
    space = SearchSpace()
    for name, value in flatten_params(params).items():
        if not isinstance(value, str):
            space.fixed.append(render_override(name, value))
            continue
        override = _parse(parser, f"{name}={value}", where=f"hydra.sweeper.params.{name}")
        _add(space, override)
    for argument in arguments:
        override = _parse(parser, argument, where=f"the command-line override {argument!r}")
        key = override_key(argument)
        space.distributions.pop(override.get_key_element(), None)
        space.fixed = [fixed for fixed in space.fixed if override_key(fixed) != key]
        _add(space, override)
    return space


def _parse(parser: OverridesParser, line: str, where: str) -> Override:
    try:
        return parser.parse_override(line)
    except HydraException as error:
        raise SearchSpaceError(f"{where}: {error}. Supported distributions: {SUPPORTED_FORMS}") from None


def _add(space: SearchSpace, override: Override) -> None:
    if override.is_sweep_override():
        space.distributions[override.get_key_element()] = to_distribution(override)
    else:
        space.fixed.append(override.input_line)


def to_distribution(override: Override) -> BaseDistribution:
    """One sweep override as an Optuna distribution, with the checks Optuna would make later and less
    clearly (an inverted interval, a log range that touches zero, an empty choice)."""
    name = override.get_key_element()
    value = override.value()
    if isinstance(value, ChoiceSweep):
        choices = list(value.list)
        for choice in choices:
            if choice is not None and not isinstance(choice, (str, int, float, bool)):
                raise SearchSpaceError(
                    f"{name}: choice() options must be strings, numbers, booleans or null, got {choice!r}"
                )
        if not choices:
            raise SearchSpaceError(f"{name}: choice() needs at least one option")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        low, stop, step = value.start, value.stop, value.step
        _check_bounds(name, "range", low, stop, log=False)
        if step is None or step <= 0:
            raise SearchSpaceError(f"{name}: range() step must be > 0, got {step}")
        if value.shuffle:
            raise SearchSpaceError(f"{name}: shuffle(range(...)) has no meaning for a sampler; drop shuffle()")
        count = math.ceil(round((stop - low) / step, 9))  # values low, low + step, ... below stop
        if count < 1:
            raise SearchSpaceError(f"{name}: range({low}, {stop}) is empty (stop is excluded); write range({low}, {stop} + {step})")
        high = low + (count - 1) * step
        if all(isinstance(number, int) for number in (low, stop, step)):
            return IntDistribution(int(low), int(high), step=int(step))
        return FloatDistribution(float(low), float(high), step=float(step))
    unknown_tags = sorted(set(getattr(value, "tags", ())) - set(SUPPORTED_TAGS))
    if unknown_tags:
        raise SearchSpaceError(
            f"{name}: unknown tag {', '.join(unknown_tags)} in {override.input_line.split('=', 1)[1]!r}; the sweeper knows "
            f"tag(log, ...) only (a log-uniform range); drop the tag for a uniform one"
        )
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        _check_bounds(name, "interval", value.start, value.end, log=log)
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise SearchSpaceError(
        f"{name}: {override.input_line.split('=', 1)[1]!r} is not a distribution the sweeper knows. "
        f"Supported: {SUPPORTED_FORMS}, or a fixed value"
    )


def _check_bounds(name: str, kind: str, low: float, high: float, log: bool) -> None:
    if low is None or high is None or not all(math.isfinite(float(bound)) for bound in (low, high)):
        raise SearchSpaceError(f"{name}: {kind}() needs two finite bounds, got ({low}, {high})")
    if low > high:
        raise SearchSpaceError(
            f"{name}: {kind}({low}, {high}) is inverted (low > high); write {kind}({high}, {low})"
        )
    if log and low <= 0:
        raise SearchSpaceError(f"{name}: a log range needs low > 0, got {kind}({low}, {high})")
