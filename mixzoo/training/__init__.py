"""The training loop :func:`~mixzoo.training.loop.fit` and its collaborators, one concept per module.

* :mod:`.loop` - :func:`fit`: minibatches in a seeded order, schedules, steps, history;
* :mod:`.progress` - a bar on a terminal, a plain line every few seconds elsewhere;
* :mod:`.divergence` - the NaN/inf guard with its retries at half the learning rate;
* :mod:`.module_state` - snapshots of parameters for the guard;
* :mod:`.resumable` - the resumable training state, written every few epochs;
* :mod:`.persistence` - atomic saves, safe loads and the random generators' state;
* :mod:`.early_stopping` - held-out loss and patience;
* :mod:`.convergence` - stopping when the training loss no longer changes;
* :mod:`.threads` - how many torch threads a fit uses.

The step the loop repeats (one SVI step, closed-form EM, the two-fold step) belongs to the inference algorithm:
see :mod:`mixzoo.inference.step`.
"""

from .convergence import Convergence
from .divergence import Diverged, DivergenceGuard
from .early_stopping import EarlyStopping
from .loop import FitResult, evaluate_loss, fit, set_seed
from .resumable import TrainingCheckpoint

__all__ = [
    "fit",
    "FitResult",
    "evaluate_loss",
    "set_seed",
    "Diverged",
    "DivergenceGuard",
    "TrainingCheckpoint",
    "EarlyStopping",
    "Convergence",
]
