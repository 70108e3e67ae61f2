"""The resumable training state: one file, written atomically every few epochs.

It holds the epoch, the module and param-store values, the step's optimizer state, every
random generator the loop uses (per process in a distributed run), the history and the
early-stopping record, so that a resumed run ends exactly where the uninterrupted one
would. It is read with ``torch.load(weights_only=True)``
(:func:`~mixzoo.training.persistence.safe_load`) and refused when it was written for other data
or another number of processes.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from ..errors import MixzooInputError
from ..inference.data_parallel import DistributedContext
from .persistence import FORMAT, atomic_save, capture_rng, data_fingerprint, param_store_values, safe_load

__all__ = ["TrainingCheckpoint"]


class TrainingCheckpoint:
    """Writes (and reads back) the training state in ``path`` every ``every`` epochs.

    :param meta: extra JSON-like entries stored with the state (e.g. the restart index).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        every: int,
        x: torch.Tensor,
        context: DistributedContext,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise MixzooInputError(f"checkpoint_every must be a positive integer, got {every!r}.")
        self.path, self.every, self.context, self.meta = path, every, context, meta or {}
        self.fingerprint = data_fingerprint(x)

    def due(self, epochs_done: int, last: bool) -> bool:
        return last or epochs_done % self.every == 0

    def load(self) -> dict[str, Any]:
        """The saved state, checked against this run's data and process count."""
        saved = safe_load(self.path, "training state")
        path = str(self.path)
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise MixzooInputError(f"{path!r} is not a mixzoo training state; pass the file fit(checkpoint=...) wrote.")
        shape, total = saved["data"]["shape"], saved["data"]["sum"]
        if shape != self.fingerprint["shape"] or not math.isclose(total, self.fingerprint["sum"], rel_tol=1e-9, abs_tol=1e-6):
            raise MixzooInputError(
                f"the training state in {path!r} was written for other data (shape {shape}); "
                f"resume with the data it started on (shape {self.fingerprint['shape']})."
            )
        if saved.get("world", 1) != self.context.world:
            raise MixzooInputError(
                f"the training state in {path!r} was written by {saved.get('world', 1)} process(es); "
                f"resume with the same number, not {self.context.world}."
            )
        return saved

    def save(
        self,
        epochs_done: int,
        modules: list[torch.nn.Module],
        optim_state: dict[str, Any],
        generator: torch.Generator,
        history: dict[str, Any],
        best: list[dict[str, torch.Tensor]] | None,
    ) -> None:
        """Write the state (rank 0 alone; every rank's generators are gathered first)."""
        rng: Any = capture_rng(generator)
        if self.context.world > 1:
            rng = self.context.gather(rng)
        if not self.context.is_main:
            return
        atomic_save(
            {
                "format": FORMAT,
                "epoch": epochs_done,
                "world": self.context.world,
                "data": self.fingerprint,
                "modules": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in modules],
                "store": param_store_values(),
                "optim": optim_state,
                "rng": rng,
                "history": history,
                "best": best,
                "meta": self.meta,
            },
            self.path,
        )
