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


def test_report_agrees_with_scikit_learn_on_random_labellings():
    """NMI and ARI come from one contingency table; scikit-learn computes them from the labels. Label sets with gaps
    (classes 2, 7, 12), single clusters, identical and unrelated labellings all appear among the cases."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    rng = np.random.default_rng(3)
    for case in range(300):
        n = int(rng.integers(2, 80))
        true = rng.integers(0, rng.integers(1, 6), n) * (5 if case % 4 == 0 else 1) + (2 if case % 4 == 0 else 0)
        pred = true.copy() if case % 7 == 0 else rng.integers(0, rng.integers(1, 6), n)
        proba = np.eye(int(pred.max()) + 1)[pred] * 0.9 + 0.1 / (pred.max() + 1)
        r = clustering_report(true, proba)
        assert r["nmi"] == pytest.approx(normalized_mutual_info_score(true, pred), abs=1e-12)
        assert r["ari"] == pytest.approx(adjusted_rand_score(true, pred), abs=1e-12)
        assert r["acc"] == pytest.approx(cluster_accuracy(true, pred))


def test_correct_after_matching_is_each_point_matched_cluster_against_its_class():
    from mixzoo.analysis.metrics import correct_after_matching

    true = np.array([5, 5, 5, 9, 9, 9, 9])
    pred = np.array([1, 1, 0, 0, 0, 0, 2])  # 1 -> 5, 0 -> 9, 2 unmatched
    proba = np.eye(3)[pred]
    np.testing.assert_array_equal(correct_after_matching(true, proba), [True, True, False, True, True, True, False])


def test_the_binned_calibration_error_weights_each_bin_by_its_points_and_skips_empty_bins():
    from mixzoo.analysis.metrics import binned_calibration_error, expected_calibration_error, reliability

    conf, acc, counts = np.array([0.5, np.nan, 0.9]), np.array([0.25, np.nan, 1.0]), np.array([2, 0, 8])
    assert binned_calibration_error(conf, acc, counts) == pytest.approx((2 * 0.25 + 8 * 0.1) / 10)
    labels, proba = np.array([0, 0, 1, 1]), np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    assert binned_calibration_error(*reliability(labels, proba)) == expected_calibration_error(labels, proba)
