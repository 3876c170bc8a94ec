"""Finding environments by name: built-ins, `@register_env`, the `assay.envs` entry points,
and families of envs named `PREFIX:<member>` (`rg:<dataset>`), each made on first use."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, TypeVar

from assay.envs.base import Environment
from assay.errors import AssayError

E = TypeVar("E", bound=type[Environment])

# name -> "module:Class" for the built-ins, imported only when asked for (code pulls in the sandbox).
_BUILTIN = {
    "countdown": "assay.envs.countdown:CountdownEnv",
    "math": "assay.envs.math:MathEnv",
    "code": "assay.envs.code:CodeEnv",
    "smt": "assay.envs.smt:SmtEnv",
    "lean": "assay.envs.lean:LeanEnv",
}
_registered: dict[str, type[Environment]] = {}
ENTRY_POINT_GROUP = "assay.envs"
#: prefix -> the module of a family of envs named `prefix:<member>`, imported only when a
#: name with that prefix is asked for. The module provides `env_class(member)`,
#: `family_description()`, `available()` and `members()` (name -> description).
_FAMILIES = {"rg": "assay.envs.rg"}
#: how each family is named where its members are not listed one by one
_FAMILY_LABELS = {"rg": "rg:<dataset>"}


class UnknownEnvError(AssayError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class PluginError(AssayError, TypeError):
    """A plug-in env (an `assay.envs` entry point) that does not load, or is not an env;
    `reason` is why, without the env's name (what `assay envs` lists beside it)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"env {name!r}: {reason}")
        self.reason = reason


def register_env(cls: E) -> E:
    """Class decorator: make an `Environment` subclass available by its `name`."""
    if not (isinstance(cls, type) and issubclass(cls, Environment)):
        raise TypeError(f"register_env expects an Environment subclass, got {cls!r}")
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name` to be registered")
    _registered[cls.name] = cls
    return cls


def _load(target: str) -> type[Environment]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def env_names() -> list[str]:
    """Every known environment name, sorted; a family's members are not listed (`list_envs`)."""
    return sorted(set(_BUILTIN) | set(_registered) | set(_entry_points()))


def _family(name: str) -> tuple[Any, str] | None:
    """(the family's module, the member) for a name `prefix:member` of a known family."""
    prefix, sep, member = name.partition(":")
    if not sep or prefix not in _FAMILIES:
        return None
    return importlib.import_module(_FAMILIES[prefix]), member


def get_env_class(name: str) -> type[Environment]:
    """The class of env `name`; an `UnknownEnvError` lists the known names."""
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        return _load(_BUILTIN[name])
    family = _family(name)
    if family is not None:
        module, member = family
        return module.env_class(member)  # a missing extra is an AssayError naming it
    eps = _entry_points()
    if name in eps:  # a plug-in: whatever its loading raises is its fault, said in one line
        try:
            cls = eps[name].load()
        except Exception as exc:
            raise PluginError(name, f"entry point {eps[name].value} cannot be loaded: "
                                    f"{type(exc).__name__}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Environment)):
            raise PluginError(name, f"entry point {eps[name].value} is not an Environment subclass")
        return cls
    families = ", ".join(_FAMILY_LABELS.values())
    raise UnknownEnvError(f"unknown env {name!r} (known: {', '.join(env_names())}, {families})")


def get_env(name: str, /, **options: Any) -> Environment:
    """An environment instance by name; options as for `--set KEY=VALUE`."""
    return get_env_class(name)(**options)


def list_envs(*, expand: bool = False) -> dict[str, str]:
    """name -> one-line description, for every environment that can be loaded.

    Each family is one entry (`rg:<dataset>`) unless `expand`, which lists every member
    (a family whose extra is not installed stays one entry saying so).
    """
    out = {}
    for name in env_names():
        try:
            out[name] = get_env_class(name).description
        except PluginError as exc:  # a broken plug-in must not hide the others
            out[name] = f"({exc.reason})"
        except Exception as exc:
            out[name] = f"(cannot be loaded: {type(exc).__name__}: {exc})"
    for prefix, target in _FAMILIES.items():
        module = importlib.import_module(target)
        if expand and module.available():
            out.update(module.members())
        else:
            out[_FAMILY_LABELS[prefix]] = module.family_description()
    return out
