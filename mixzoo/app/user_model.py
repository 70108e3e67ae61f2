"""A user's own model class as a family: ``--model path/to/file.py:ClassName`` or ``package.module:ClassName``.

The class is a Pyro model written to the mixzoo contract (:mod:`mixzoo.contract`): constructed as
``ClassName(dim=D, n_clusters=K)``, called as ``model(x, y=None, subsample=None)``, with an
enumerable cluster site ``"y"`` inside the plate ``"data"``. Its ``initialize(x, seed=...)``
is called before training when it has one. It trains with the empty guide and
``TraceEnum_ELBO`` by default; the other losses are offered and checked against the pair
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

from torch import nn

from ..errors import MixzooInputError
from ..guides import EmptyGuide
from ..inference import LOSSES
from ..models.family import DataShape, Family, Training
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
            raise MixzooInputError(f"--model {name!r}: importing {where!r} failed ({type(err).__name__}: {err}).") from None
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


@functools.cache
def user_family(name: str) -> Family:
    """A :class:`~mixzoo.models.family.Family` around the user's class named by ``name`` (imports it)."""
    cls = _load_class(name)

    def build(dim: int, k: int, guide: str, options: Any) -> tuple[nn.Module, nn.Module]:
        try:
            model = cls(dim=dim, n_clusters=k)
        except Exception as err:
            raise MixzooInputError(f"--model {name!r}: {cls.__name__}(dim={dim}, n_clusters={k}) failed ({err}).") from None
        return model, EmptyGuide()

    def recipe(options: Any, data: DataShape | None, loss: str) -> Training:
        return Training(epochs=200, lr=0.05, batch_size=None if data is None or data.n <= 20000 else 1024)

    options = type("UserOptions", (UserOptions,), {"family": name})  # its own class: messages name this model
    return Family(
        name=name,
        description=(inspect.getdoc(cls) or cls.__name__).splitlines()[0],
        cite="your own model",
        options=options,
        build=build,
        guides=("empty",),
        losses=tuple(LOSSES),
        recipe=recipe,
    )
