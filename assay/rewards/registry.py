"""Finding rewards by name, registering your own, and parsing weighted combinations.

A reward spec is a name (`majority_vote`) or a weighted sum of names
(`0.5*verifier + 0.5*self_certainty`). Register a function `group -> list[float]` or a
`Reward` subclass with `@register_reward` to make it available by name everywhere,
including `assay train --reward NAME`. Every reward declares its kind, "external" or
"intrinsic", so that the lab can group it with its peers.

An installed package offers rewards through the `assay.rewards` entry-point group: each
entry names a `Reward` subclass, or a function its module registers with
`@register_reward` (the module is imported when the name is first asked for).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, TypeVar, overload

from assay.rewards.base import (
    FunctionReward,
    Reward,
    RewardError,
    RolloutGroup,
    WeightedSum,
    check_kind,
)
from assay.rewards.builtin import BUILTIN

_registered: dict[str, Callable[[], Reward]] = {}
F = TypeVar("F")
ENTRY_POINT_GROUP = "assay.rewards"

_TERM = re.compile(r"^\s*(?:(-?\d*\.?\d+(?:[eE]-?\d+)?)\s*\*\s*)?([A-Za-z_]\w*)\s*$")


@overload
def register_reward(target: F) -> F: ...
@overload
def register_reward(
    target: str | None = None, *, kind: str | None = None, binary: bool = False
) -> Callable[[F], F]: ...


def register_reward(target: Any = None, *, kind: str | None = None, binary: bool = False) -> Any:
    """Make a reward available by name.

    Use on a function (`@register_reward(kind="external")` or
    `@register_reward("name", kind="intrinsic", binary=True)`), whose name is the
    function's name unless given, or on a `Reward` subclass with `name` and `kind`
    attributes (`@register_reward`). A function must say its `kind`: "external" when
    something outside the policy decides it, "intrinsic" when it reads only the
    policy's own signals.
    """

    def register(obj: Any, name: str | None) -> Any:
        if isinstance(obj, type) and issubclass(obj, Reward):
            key = name or obj.name
            if not key:
                raise RewardError(f"{obj.__name__} needs a `name` to be registered")
            _check_name(key)
            check_kind(key, kind or obj.kind)
            if kind and kind != obj.kind:
                raise RewardError(f"reward {key!r}: kind={kind!r} differs from its class's {obj.kind!r}")
            # registered under another name than its class's: its metrics go by the one used
            _registered[key] = obj if key == obj.name else lambda: _renamed(obj(), key)
        elif callable(obj):
            key = name or obj.__name__
            _check_name(key)
            check_kind(key, kind or "")
            _registered[key] = lambda: FunctionReward(key, obj, kind=kind or "", binary=binary)
        else:
            raise TypeError(f"register_reward expects a function or a Reward subclass, got {obj!r}")
        return obj

    if isinstance(target, str) or target is None:
        return lambda obj: register(obj, target)
    return register(target, None)


def _check_name(name: str) -> None:
    """A name a reward spec can say (`0.5*NAME + ...`), and not a built-in reward's."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise RewardError(f"reward name {name!r} cannot be used in a reward spec: use letters, "
                          "digits and _, not starting with a digit")
    if name in BUILTIN:
        raise RewardError(f"reward {name!r} is built in; register yours under another name")


def _renamed(reward: Reward, name: str) -> Reward:
    reward.name = name  # type: ignore[misc]
    return reward


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def reward_names() -> list[str]:
    """Every reward name known right now (plug-ins' included), sorted."""
    return sorted(set(BUILTIN) | set(_registered) | set(_entry_points()))


def get_reward(spec: str | Reward | Sequence[tuple[float, str | Reward]]) -> Reward:
    """A reward from a spec: a name, `w*name + w*name`, a `Reward`, or (weight, reward) pairs."""
    if isinstance(spec, Reward):
        return spec
    if isinstance(spec, str):
        terms = spec.split("+")
        parts = []
        for term in terms:
            match = _TERM.match(term)
            if not match:
                raise RewardError(
                    f"cannot read reward term {term!r} in {spec!r} (expected NAME or W*NAME)"
                )
            weight = float(match.group(1)) if match.group(1) else 1.0
            parts.append((weight, _by_name(match.group(2))))
        if not parts:
            raise RewardError("empty reward spec")
        if len(parts) == 1 and parts[0][0] == 1.0:
            return parts[0][1]
        return WeightedSum(parts)
    pairs = []
    for item in spec if isinstance(spec, (list, tuple)) else ():
        try:
            weight, reward = item
            weight = float(weight)
        except (TypeError, ValueError):
            raise RewardError(f"reward spec: expected (weight, reward) pairs, got {item!r:.60}") from None
        pairs.append((weight, get_reward(reward)))
    if not pairs:
        raise RewardError(f"reward spec: expected a name, `w*name + ...`, a Reward or (weight, "
                          f"reward) pairs, got {spec!r:.60}")
    return WeightedSum(pairs)


def _by_name(name: str) -> Reward:
    if name in _registered:
        return _registered[name]()
    if name in BUILTIN:
        return BUILTIN[name]()
    eps = _entry_points()
    if name in eps:
        return _plug_in(name, eps[name])
    raise RewardError(f"unknown reward {name!r} (known: {', '.join(reward_names())})")


def _plug_in(name: str, ep: Any) -> Reward:
    """The reward an `assay.rewards` entry point names, registered on first use."""
    try:
        obj = ep.load()  # its module may register the name itself (@register_reward)
    except Exception as exc:
        raise RewardError(f"reward {name!r}: its entry point {ep.value!r} cannot be loaded "
                          f"({type(exc).__name__}: {exc})") from None
    if name not in _registered:
        if not (isinstance(obj, type) and issubclass(obj, Reward)):
            raise RewardError(
                f"reward {name!r}: its entry point {ep.value!r} is neither a Reward subclass "
                "nor a function its module registers with @register_reward"
            )
        register_reward(name)(obj)
    return _registered[name]()


def score_group(
    reward: Reward, group: RolloutGroup
) -> tuple[list[float], dict[str, list[float]]]:
    """The group's rewards and each named part's values (`Reward.score_parts`), with any
    exception turned into a `RewardError` naming the reward."""
    try:
        return reward.score_parts(group)
    except RewardError:
        raise
    except Exception as exc:
        raise RewardError(f"reward {reward.name!r} raised {type(exc).__name__}: {exc}") from exc
