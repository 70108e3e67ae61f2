"""Progress of a training run: a bar on a terminal, a plain line every few seconds elsewhere.

On a terminal :class:`Progress` draws a tqdm bar that disappears when training ends. When
standard error is a file or a pipe (a log, a notebook's captured output, a batch job), a
bar would write carriage-return lines, so it prints instead, at most every ``interval``
seconds, one line such as::

    fit: epoch 12/300, loss 44.62, 1.3 s/epoch, at most 6 min left

and nothing at all for a run that ends within the first interval.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from tqdm.auto import tqdm

__all__ = ["Progress"]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Reports finished epochs of a run.

    :param first: epochs already done (a resumed run).
    :param total: the run's epoch limit.
    :param enabled: report at all (``False`` in the other processes of a distributed run).
    :param interval: seconds between plain lines when ``stream`` is not a terminal.
    :param stream: where to report (standard error by default).
    """

    def __init__(self, first: int, total: int, *, enabled: bool = True, interval: float = 5.0, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.first, self.total, self.interval = first, total, interval
        self.enabled = enabled
        terminal = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = tqdm(total=total, initial=first, disable=not terminal, desc="fit", unit="epoch", leave=False, file=self.stream) if terminal else None
        self.start = self.last = time.perf_counter()

    def update(self, epoch: int, loss: float, val: float | None = None) -> None:
        """Epoch ``epoch`` (0-based) finished with this mean training (and held-out) loss."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({"loss": f"{loss:.4g}", **({} if val is None else {"val": f"{val:.4g}"})})
            return
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.last = now
        done = epoch + 1
        per_epoch = (now - self.start) / max(done - self.first, 1)
        left = per_epoch * (self.total - done)
        held_out = "" if val is None else f", held-out {val:.4g}"
        print(
            f"fit: epoch {done}/{self.total}, loss {loss:.4g}{held_out}, {per_epoch:.3g} s/epoch, at most {_duration(left)} left",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
