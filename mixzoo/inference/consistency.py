r"""The consistency loss of Tissera et al. (2022, eq. 8).

.. math:: D_{KL}(p_i \,\|\, q_i) = \sum_k p_{ik} \log \frac{p_{ik}}{q_{ik}},
   \qquad p_i = \operatorname{softmax}(a^*_i), \quad q_i = \operatorname{softmax}(a^{tr*}_i),

with :math:`p_i` from the original input held constant and :math:`q_i` from its random
transformation. Both normalize the scores with the batch's statistics, as in training.
The step that lowers it after each EM step is :class:`mixzoo.inference.two_fold.TwoFoldStep`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["consistency_loss"]


def consistency_loss(model: Any, x: torch.Tensor, x_aug: torch.Tensor) -> torch.Tensor:
    """Eq. (8) averaged over the batch, with :math:`p` from the original inputs held constant."""
    with torch.no_grad():
        log_p = F.log_softmax(model.scores(x, batch_stats=True), -1)
    log_q = F.log_softmax(model.scores(x_aug, batch_stats=True), -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()
