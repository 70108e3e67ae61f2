import numpy as np
import pytest
import torch


@pytest.fixture
def blobs():
    """Three well separated 2-D Gaussian clusters with known means and weights."""
    rng = np.random.default_rng(0)
    means = np.array([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    weights = np.array([0.5, 0.3, 0.2])
    n = 1500
    labels = rng.choice(3, size=n, p=weights)
    x = means[labels] + rng.standard_normal((n, 2)) * np.array([[0.5, 1.0]])
    return torch.tensor(x, dtype=torch.float32), labels, means, weights
