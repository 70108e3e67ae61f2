import numpy as np
import pytest

from mixzoo.analysis.metrics import (
    cluster_accuracy,
    clustering_report,
    contingency,
    expected_misclassified,
    hungarian_match,
    misclassified,
    purity,
)


def test_accuracy_is_invariant_to_relabelling():
    true = [0, 0, 0, 1, 1, 2, 2, 2]
    pred = [2, 2, 2, 0, 0, 1, 1, 1]
    assert cluster_accuracy(true, pred) == 1.0
    assert hungarian_match(true, pred) == {2: 0, 0: 1, 1: 2}


def test_accuracy_hand_computed():
    # clusters: {0: classes 0,0,1}, {1: classes 1,1,0}; best matching 0->0, 1->1 gives 4 of 6
    true = [0, 0, 1, 1, 1, 0]
    pred = [0, 0, 0, 1, 1, 1]
    assert cluster_accuracy(true, pred) == pytest.approx(4 / 6)
    assert misclassified(true, pred) == 2
    assert purity(true, pred) == pytest.approx(4 / 6)
    np.testing.assert_array_equal(contingency(true, pred), [[2, 1], [1, 2]])


def test_accuracy_one_to_one_while_purity_is_many_to_one():
    # everything in one class, split into two clusters: purity 1, accuracy 1/2
    true = [0, 0, 0, 0]
    pred = [0, 0, 1, 1]
    assert purity(true, pred) == 1.0
    assert cluster_accuracy(true, pred) == 0.5
    assert hungarian_match(true, pred)[1] in (-1, 0)


def test_expected_misclassified():
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]])
    assert expected_misclassified(proba) == pytest.approx(0.1 + 0.4 + 0.5)


def test_report_keys_and_values():
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    r = clustering_report([1, 1, 0, 0], proba)
    assert r["acc"] == 1.0 and r["nmi"] == pytest.approx(1.0) and r["ari"] == pytest.approx(1.0)
    assert r["misclassified"] == 0
    assert r["expected_misclassified"] == pytest.approx(0.1 + 0.2 + 0.3 + 0.4)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        cluster_accuracy([0, 1], [0, 1, 1])
