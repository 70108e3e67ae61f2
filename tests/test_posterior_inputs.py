"""The posterior functions take what ``mixzoo.fit`` takes: NumPy arrays, lists and tensors."""

import numpy as np
import pytest
import torch

import mixzoo
from mixzoo.data import load_dataset


def test_cluster_proba_and_log_likelihood_take_numpy_lists_and_tensors():
    d = load_dataset("pinwheel", subsample=300)
    model, guide = mixzoo.GaussianMixture(dim=2, n_clusters=5), mixzoo.EmptyGuide()
    model.initialize(d.x, seed=0)
    mixzoo.fit(model, guide, d.x, epochs=3, progress=False)
    want = mixzoo.cluster_proba(model, guide, torch.as_tensor(d.x))
    for x in (d.x, d.x.astype(np.float64), d.x.tolist()):
        torch.testing.assert_close(mixzoo.cluster_proba(model, guide, x), want)
    ll = mixzoo.log_likelihood(model, guide, d.x)
    torch.testing.assert_close(ll, torch.logsumexp(mixzoo.cluster_log_joint(model, guide, d.x.tolist()), -1))
    with pytest.raises(mixzoo.MixzooInputError, match="NaN"):
        mixzoo.cluster_proba(model, guide, np.full((3, 2), np.nan))
