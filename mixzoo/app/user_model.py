"""A user's own model class as a family: ``--model path/to/file.py:ClassName`` or ``package.module:ClassName``.

The class is a Pyro model written to the mixzoo contract (:mod:`mixzoo.contract`): constructed as
``ClassName(dim=D, n_clusters=K)``, called as ``model(x, y=None, subsample=None)``, with an
enumerable cluster site ``"y"`` inside the plate ``"data"``. Its ``initialize(x, seed=...)``
is called before training when it has one. It trains with the empty guide and
``trace-enum`` by default, and with every guide and loss its declared capabilities allow
(:class:`~mixzoo.contract.ModelCapabilities`); the choice is checked against the pair
before training.

Importing the file runs its code, so mixzoo does it only when the user names the file: a
run directory records which file and class made it, and :func:`mixzoo.app.runs.load_run`
imports it again only when the user passes the same ``--model``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import pyro.nn.module
from torch import nn

from ..contract import ModelCapabilities
from ..errors import MixzooInputError
from ..models.family import DataShape, Family, Inference, Plan, Training
from ..options import Options

__all__ = ["is_user_model", "user_family", "UserOptions", "file_digest"]


@dataclass(frozen=True)
class UserOptions(Options):
    """A user's model takes no options on the command line (only ``dim`` and ``n_clusters``)."""


def is_user_model(name: str) -> bool:
    """Whether a ``--model`` value names a user's class (``FILE.py:CLASS`` or ``module:CLASS``)."""
    return ":" in str(name)


def file_digest(name: str) -> str | None:
    """SHA-256 of the model file of ``FILE.py:CLASS`` (``None`` for a module path)."""
    path = str(name).rsplit(":", 1)[0]
    if not path.endswith(".py") or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.cache
def _load_class(name: str) -> type:
    where, _, cls_name = str(name).rpartition(":")
    if not where or not cls_name.isidentifier():
        raise MixzooInputError(f"--model {name!r}: write FILE.py:ClassName or package.module:ClassName.")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise MixzooInputError(f"--model {name!r}: the file {where!r} does not exist.")
        mod_name = "mixzoo_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # the user's file itself failed: say where, in one line
            raise MixzooInputError(
                f"--model {name!r}: importing {where!r} failed ({type(err).__name__}: {err})."
            ) from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise MixzooInputError(f"--model {name!r}: cannot import module {where!r} ({err}).") from None
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        found = sorted(k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module))
        raise MixzooInputError(
            f"--model {name!r}: {where!r} has no class {cls_name!r}"
            + (f"; its model classes are: {', '.join(found)}." if found else ".")
        )
    return _checked_class(cls, name)


def _checked_class(cls: type, name: str) -> type:
    """``cls``, once it is a module constructed as ``cls(dim=D, n_clusters=K)`` with ``forward(x, y, subsample)``."""
    cls_name = cls.__name__
    if not issubclass(cls, nn.Module):
        raise MixzooInputError(f"--model {name!r}: {cls_name} is not a torch/Pyro module (PyroModule).")
    params = inspect.signature(cls).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if not takes_kwargs and not {"dim", "n_clusters"} <= set(params):
        raise MixzooInputError(
            f"--model {name!r}: {cls_name} must be constructed as {cls_name}(dim=D, n_clusters=K); "
            f"its parameters are ({', '.join(params)})."
        )
    forward = inspect.signature(cls.forward).parameters
    if not {"x", "y", "subsample"} <= set(forward):
        raise MixzooInputError(
            f"--model {name!r}: {cls_name}.forward must take (x, y=None, subsample=None), "
            f"it takes ({', '.join(p for p in forward if p != 'self')})."
        )
    return cls


def _user_plan(options: Any, data: DataShape, inference: Inference) -> Plan:
    """Full-batch Adam at 0.05 for 200 epochs up to 20000 points, minibatches of 1024 above; 0.01 under NCE, whose
    logistic loss on a normalized model moves far on a step of 0.05. The data are used as they are (a user's model
    may be discrete, so integer data are not dequantized for it)."""
    lr = 0.01 if inference.loss == "nce" else 0.05
    return Plan(
        options=options,
        training=Training(epochs=200, lr=lr, batch_size=None if data.n <= 20000 else 1024),
        rescale=False,
    )  # a user's model sees the data in the user's units


def _criteria(cls: type, caps: Any) -> tuple[str, ...]:
    """What select can rank a user's model by: held-out log-likelihood always (exact with y enumerated, an estimate
    otherwise), LOO where it is exact, BIC and ICL where the model counts its parameters."""
    exact = caps.enumerable_y and caps.normalized
    counted = ("bic", "icl") if exact and hasattr(cls, "n_parameters") else ()
    return (*counted, "heldout", *(("loo",) if exact else ()))


def user_family(model: str | type) -> Family:
    """A :class:`~mixzoo.models.family.Family` around the user's class (named by ``FILE.py:CLASS`` /
    ``module:CLASS``, which imports it, or given), with every guide and loss its declared capabilities allow."""
    return _family_of_class(
        _load_class(model) if isinstance(model, str) else _checked_class(model, model.__name__), _name(model)
    )


def _name(model: str | type) -> str:
    return model if isinstance(model, str) else f"{model.__module__}:{model.__qualname__}"


@functools.cache
def _family_of_class(cls: type, name: str) -> Family:
    def build(dim: int, k: int, options: Any) -> nn.Module:
        try:
            model = cls(dim=dim, n_clusters=k)
        except Exception as err:
            raise MixzooInputError(
                f"--model {name!r}: {cls.__name__}(dim={dim}, n_clusters={k}) failed ({err})."
            ) from None
        if isinstance(model, nn.Module) and not isinstance(model, pyro.nn.PyroModule):
            pyro.nn.module.to_pyro_module_(model)  # a plain torch module: Pyro then sees its parameters
        return model

    options = type("UserOptions", (UserOptions,), {"owner": f"model {name!r}"})  # its own class: messages name it
    caps = ModelCapabilities.of(cls)
    return Family(
        name=name,
        description=(inspect.getdoc(cls) or cls.__name__).splitlines()[0],
        cite="your own model",
        options=options,
        model=cls,
        build=build,
        default_guide="empty" if caps.enumerable_y else "encoder",
        default_loss="trace-enum",
        plan=_user_plan,
        criteria=_criteria(cls, caps),
        criteria_note="" if hasattr(cls, "n_parameters") else "BIC and ICL need the model's n_parameters()",
    )
