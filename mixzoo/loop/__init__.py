"""Collaborators of the training loop :func:`mixzoo.fit`, one concept per module.

* :mod:`.steps` - one optimisation step on a minibatch (SVI, or a family's own step);
* :mod:`.two_fold` - Tissera et al.'s (2022) EM step followed by a consistency step, as a step;
* :mod:`.conjugate_em` - closed-form EM (one iteration per epoch) for conjugate mixtures;
* :mod:`.progress` - a bar on a terminal, a plain line every few seconds elsewhere;
* :mod:`.divergence` - the NaN/inf guard with its retries at half the learning rate;
* :mod:`.checkpointing` - the resumable training state;
* :mod:`.early_stopping` - held-out loss and patience;
* :mod:`.convergence` - stopping when the training loss no longer changes.
"""

from .checkpointing import TrainingCheckpoint
from .conjugate_em import ConjugateEMStep, conjugate_em
from .convergence import Convergence
from .divergence import Diverged, DivergenceGuard
from .early_stopping import EarlyStopping
from .steps import Step, StepFactory, SVIStep
from .two_fold import TwoFoldStep, two_fold

__all__ = [
    "Step",
    "StepFactory",
    "SVIStep",
    "TwoFoldStep",
    "two_fold",
    "ConjugateEMStep",
    "conjugate_em",
    "Diverged",
    "DivergenceGuard",
    "TrainingCheckpoint",
    "EarlyStopping",
    "Convergence",
]
