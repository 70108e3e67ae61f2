import numpy as np
import pytest
import torch

from mixzoo import MixzooInputError
from mixzoo.data.validation import check_data, check_labels, check_n_clusters


@pytest.mark.parametrize(
    "data, message",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "contains 1 NaN/inf values \\(first in row 0\\)"),
        (np.array([[1.0, 2.0], [np.inf, 1.0]]), "NaN/inf values \\(first in row 1\\)"),
        (np.zeros(5), "must be 2-D .* shape \\(5,\\)"),
        (np.zeros((2, 3, 4)), "must be 2-D"),
        (np.zeros((0, 3)), "is empty"),
        (np.array([["a", "b"], ["c", "d"]]), "is not numeric"),
        ([[1, 2], [3]], "cannot be read as an array|not numeric"),
        (torch.ones(3, 2, dtype=torch.complex64), "real numbers"),
    ],
)
def test_bad_data(data, message):
    with pytest.raises(MixzooInputError, match=message):
        check_data(data)


def test_wrong_dimensionality():
    with pytest.raises(MixzooInputError, match="has 3 features but the model was built for 2"):
        check_data(np.zeros((4, 3)), dim=2)


def test_good_data_becomes_float32():
    t = check_data([[1, 2], [3, 4]])
    assert t.dtype == torch.float32 and t.shape == (2, 2)


@pytest.mark.parametrize(
    "k, n, message",
    [
        (0, 10, "at least 1, got 0"),
        (-3, 10, "at least 1, got -3"),
        (5, 3, "fewer points \\(3\\) than clusters \\(5\\)"),
        (2.5, 10, "integer"),
    ],
)
def test_bad_cluster_counts(k, n, message):
    with pytest.raises(MixzooInputError, match=message):
        check_n_clusters(k, n)


def test_one_cluster_is_a_density_model():
    assert check_n_clusters(1, 10) == 1


def test_labels():
    assert check_labels([0, 1, -1], 3, 2).tolist() == [0, 1, -1]
    with pytest.raises(MixzooInputError, match="must lie in \\[0, 2\\)"):
        check_labels([0, 2, 1], 3, 2)
    with pytest.raises(MixzooInputError, match="1-D with 3 entries"):
        check_labels([0, 1], 3, 2)


@pytest.mark.parametrize(
    "data",
    [
        np.arange(12, dtype=np.int64).reshape(6, 2),  # integers
        np.arange(12, dtype=np.float64).reshape(6, 2)[::-1],  # float64, negative strides
        np.asfortranarray(np.arange(12, dtype=np.float32).reshape(6, 2)),  # column-major
        torch.arange(12.0).reshape(2, 6).T,  # non-contiguous tensor
        torch.ones(6, 2, dtype=torch.bool),  # booleans
        torch.ones(6, 2, dtype=torch.float64),
    ],
    ids=["int64", "negative-strides", "fortran", "transposed-tensor", "bool", "float64-tensor"],
)
def test_documented_conversions(data):
    t = check_data(data)
    assert t.dtype == torch.float32 and t.is_contiguous() and t.device.type == "cpu" and t.shape == (6, 2)
    torch.testing.assert_close(t, torch.as_tensor(np.asarray(data, dtype=np.float32)))


def test_float64_beyond_float32_range_is_named():
    with pytest.raises(MixzooInputError, match="beyond float32's range .* row 1"):
        check_data(np.array([[1.0, 2.0], [1e39, 0.0]]))


def test_values_too_large_for_densities():
    with pytest.raises(MixzooInputError, match="as large as 1e\\+20 .* Standardise"):
        check_data(np.array([[1.0, 2.0], [1e20, 0.0]]))
