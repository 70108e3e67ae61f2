"""Typed options of a model family, a guide or an inference algorithm, declared once.

Each declares its options as a frozen dataclass deriving from :class:`Options`, one
:func:`option` per field::

    @dataclass(frozen=True)
    class GMMOptions(Options):
        covariance: Literal["diag", "full"] = option("diag", "covariance of each component")

The field's type, default and one-line doc are all the CLI (``--covariance``, with its
choices and default in ``--help``), the estimator (``model_options={"covariance": "full"}``)
and a run's ``config.json`` need. The options of a family, a guide and a loss share one namespace of flags,
so their names differ (a test checks it). Values are checked on construction: the type
(``int``, ``float``, ``bool``, ``str``, ``Literal[...]`` choices, ``tuple[int, ...]``
given as ``(64, 64)``, ``[64, 64]`` or ``"64,64"``), the bounds of :func:`option`, and
the family's own cross-field rules in :meth:`Options.check`. An option that applies only
to some guides or losses, or only when a switch is on, says so in :func:`option`, and
:meth:`Options.refuse_inapplicable` refuses it when it is given where it cannot apply.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from .errors import MixzooInputError

__all__ = ["Options", "OptionInfo", "option", "flag_name"]

T = TypeVar("T", bound="Options")


def flag_name(name: str) -> str:
    """The command-line flag of an option: ``anneal_start`` -> ``--anneal-start``."""
    return "--" + name.replace("_", "-")


def option(
    default: Any,
    doc: str,
    *,
    low: float | None = None,
    high: float | None = None,
    guides: tuple[str, ...] | None = None,
    losses: tuple[str, ...] | None = None,
    requires: str | tuple[str, Any] | None = None,
) -> Any:
    """A field of an :class:`Options` dataclass.

    :param default: the value when the option is not given.
    :param doc: one line for ``--help`` and ``mixzoo models``.
    :param low: smallest allowed value (numbers, and each entry of a tuple).
    :param high: largest allowed value.
    :param guides: the guides the option applies to (``None``: all).
    :param losses: the losses the option applies to (``None``: all).
    :param requires: a boolean option that must be on for this one to apply, or ``(name, value)``:
        another option that must have that value.
    """
    meta = {"doc": doc, "low": low, "high": high, "guides": guides, "losses": losses, "requires": requires}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionInfo:
    """What the CLI and the docs show of one option."""

    name: str
    kind: Any
    """``int``, ``float``, ``bool``, ``str`` or ``tuple`` (of ints)."""
    default: Any
    doc: str
    choices: tuple[Any, ...] | None
    guides: tuple[str, ...] | None
    losses: tuple[str, ...] | None
    requires: str | tuple[str, Any] | None
    low: float | None
    high: float | None

    @property
    def flag(self) -> str:
        return flag_name(self.name)

    def applies_to(self) -> str:
        """Where the option applies, in words (empty when everywhere)."""
        parts = []
        if self.guides:
            parts.append("guide " + "/".join(self.guides))
        if self.losses:
            parts.append("loss " + "/".join(self.losses))
        if isinstance(self.requires, tuple):
            parts.append(f"{flag_name(self.requires[0])} {self.requires[1]}")
        elif self.requires:
            parts.append(flag_name(self.requires))
        return ", ".join(parts)


def _kind(hint: Any) -> tuple[Any, tuple[Any, ...] | None]:
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        return type(choices[0]), choices
    if origin is tuple:
        return tuple, None
    if hint in (int, float, bool, str):
        return hint, None
    raise TypeError(f"option type {hint!r} is not supported (int, float, bool, str, Literal[...], tuple[int, ...])")


@dataclass(frozen=True)
class Options:
    """Base class of the options of a model family, a guide or a loss; subclasses are frozen dataclasses of
    :func:`option` fields."""

    owner: typing.ClassVar[str] = "model"
    """Whose options these are, for messages: ``model 'gmm'``, ``guide 'encoder'``, ``loss 'vimco'``."""

    @classmethod
    def infos(cls) -> tuple[OptionInfo, ...]:
        """One :class:`OptionInfo` per option, in declaration order."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            kind, choices = _kind(hints[f.name])
            m = f.metadata
            out.append(
                OptionInfo(
                    f.name, kind, f.default, m.get("doc", ""), choices, m.get("guides"), m.get("losses"),
                    m.get("requires"), m.get("low"), m.get("high"),
                )
            )  # fmt: skip
        return tuple(out)

    @classmethod
    def from_dict(cls: type[T], values: Mapping[str, Any] | None = None) -> T:
        """Options from a mapping of names to values; an unknown name is a clear error."""
        values = dict(values or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            known = ", ".join(names) if names else "none"
            raise MixzooInputError(
                f"option(s) {', '.join(unknown)} do not apply to {cls.owner}; its options are: {known}."
            )
        return cls(**values)

    def __post_init__(self) -> None:
        for info in self.infos():
            object.__setattr__(self, info.name, self._coerce(info, getattr(self, info.name)))
        self.check()

    def _coerce(self, info: OptionInfo, value: Any) -> Any:
        where = f"{info.flag} ({self.owner})"
        if info.kind is tuple:
            if isinstance(value, str):
                parts = [v.strip() for v in value.split(",") if v.strip()]
                if not all(p.lstrip("-").isdigit() for p in parts):
                    raise MixzooInputError(f"{where} takes comma-separated integers like 64,64, got {value!r}.")
                value = [int(p) for p in parts]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise MixzooInputError(f"{where} takes a list of integers like 64,64, got {value!r}.")
            value = tuple(value)
            for v in value:
                self._bounds(info, v, where)
            return value
        if info.kind is bool:
            if not isinstance(value, bool):
                raise MixzooInputError(f"{where} is a switch (true or false), got {value!r}.")
            return value
        if info.kind is str:
            if not isinstance(value, str):
                raise MixzooInputError(f"{where} takes a string, got {value!r}.")
        elif info.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise MixzooInputError(f"{where} takes an integer, got {value!r}.")
        elif info.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise MixzooInputError(f"{where} takes a finite number, got {value!r}.")
            value = float(value)
        if info.choices is not None and value not in info.choices:
            raise MixzooInputError(f"{where} must be one of {', '.join(map(str, info.choices))}, got {value!r}.")
        self._bounds(info, value, where)
        return value

    @staticmethod
    def _bounds(info: OptionInfo, value: Any, where: str) -> None:
        if info.low is not None and value < info.low:
            raise MixzooInputError(f"{where} must be at least {info.low:g}, got {value!r}.")
        if info.high is not None and value > info.high:
            raise MixzooInputError(f"{where} must be at most {info.high:g}, got {value!r}.")

    def check(self) -> None:
        """Cross-field rules of the family; raise :class:`MixzooInputError` on a bad combination."""

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-ready values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self: T, **changes: Any) -> T:
        """A copy with some options changed (and checked)."""
        return dataclasses.replace(self, **changes)

    def refuse_inapplicable(
        self, given: set[str] | frozenset[str], guide: str, loss: str, *, before_data: bool = False
    ) -> None:
        """Refuse an option the user gave where it cannot apply (another guide or loss, or its switch off).

        :param before_data: the data are not read yet, so a switch the user left unset may still be turned on
            by the family's choices for the data (e.g. a CNN for images); only switches the user set are checked.
        """
        for info in self.infos():
            if info.name not in given:
                continue
            switch = info.requires[0] if isinstance(info.requires, tuple) else info.requires
            requires = None if before_data and switch not in given else info.requires  # unset: the data may set it
            why = None
            if info.guides is not None and guide not in info.guides:
                why = f"guide {guide!r}"
            elif info.losses is not None and loss not in info.losses:
                why = f"loss {loss!r}"
            elif isinstance(requires, tuple) and getattr(self, requires[0]) != requires[1]:
                why = f"{flag_name(requires[0])} {getattr(self, requires[0])}"
            elif isinstance(requires, str) and not getattr(self, requires):
                why = f"{flag_name(requires)} off"
            if why:
                raise MixzooInputError(
                    f"{info.flag} applies to {self.owner} only with {info.applies_to()}; "
                    f"it cannot apply with {why}: drop it."
                )
