import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mixzoo.app.estimator import MixtureClusterer
from mixzoo.errors import MixzooInputError


@parametrize_with_checks([MixtureClusterer(model="gmm", epochs=20), MixtureClusterer(model="student-t", epochs=20)])
def test_sklearn_compatible(estimator, check):
    """scikit-learn's whole check_estimator, with no expected failure, for the Gaussian and Student-t mixtures."""
    check(estimator)


def _blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    means = np.array([[-6.0, 0.0, 1.0], [0.0, 6.0, -1.0], [6.0, 0.0, 0.0]])
    labels = rng.integers(0, 3, n)
    return means[labels] + rng.standard_normal((n, 3)), labels


def test_k2_versions_of_the_k1_checks():
    x, _ = _blobs(60)
    est = MixtureClusterer(n_clusters=2, epochs=20, random_state=0)
    before = dict(vars(est))
    est.fit(x)
    public = {k for k in vars(est) if not k.startswith("_") and not k.endswith("_")}
    assert public == set(before) and all(vars(est)[k] is v for k, v in before.items())  # no parameter overwritten
    full = est.predict_proba(x)
    rows = np.vstack([est.predict_proba(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(full, rows, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(est.score_samples(x[:7]), est.score_samples(x)[:7], rtol=1e-5)
    with pytest.raises(ValueError, match="2D array"):
        est.predict(x[0])
    with pytest.raises(ValueError, match="at least 1"):
        MixtureClusterer(n_clusters=0).fit(x)
    one = MixtureClusterer(n_clusters=1, random_state=0).fit(x)
    assert (one.predict(x) == 0).all() and np.allclose(one.predict_proba(x), 1.0)
    est1 = MixtureClusterer(n_clusters=2, epochs=20, random_state=0).fit(x[:, :1])
    assert est1.predict(x[:, :1]).shape == (60,)


def test_fit_predict_and_density_methods():
    x, labels = _blobs()
    est = MixtureClusterer(n_clusters=3, epochs=100, random_state=0).fit(x)
    assert est.n_features_in_ == 3 and est.labels_.shape == (300,)
    assert adjusted_rand_score(labels, est.labels_) > 0.95
    proba = est.predict_proba(x)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    ll = est.score_samples(x)
    assert ll.shape == (300,) and est.score(x) == pytest.approx(ll.mean())
    p = est.model_.n_parameters()
    assert est.bic(x) == pytest.approx(-2 * ll.sum() + p * np.log(300), rel=1e-6)
    assert est.aic(x) == pytest.approx(-2 * ll.sum() + 2 * p, rel=1e-6)
    xs, ks = est.sample(50)
    assert xs.shape == (50, 3) and set(np.unique(ks)) <= {0, 1, 2}
    # a 3-cluster model explains 3 clusters better than a 2-cluster one
    assert est.bic(x) < MixtureClusterer(n_clusters=2, epochs=100, random_state=0).fit(x).bic(x)
    # reproducible, clone gives an unfitted copy, pickling keeps the predictions
    again = clone(est).fit(x)
    np.testing.assert_array_equal(again.labels_, est.labels_)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(est)).predict_proba(x), proba)


def test_pipeline_with_scaler_and_pca():
    x, labels = _blobs()
    pipe = make_pipeline(
        StandardScaler(), PCA(n_components=2), MixtureClusterer(n_clusters=3, epochs=80, random_state=1)
    )
    pred = pipe.fit_predict(x)
    assert adjusted_rand_score(labels, pred) > 0.95
    assert pipe.predict_proba(x).shape == (300, 3)
    assert np.isfinite(pipe.score(x))


def test_bad_options_fail_clearly():
    x, _ = _blobs(30)
    with pytest.raises(MixzooInputError, match="unknown model"):
        MixtureClusterer(model="nope").fit(x)
    with pytest.raises(MixzooInputError, match="fewer than n_clusters"):
        MixtureClusterer(n_clusters=40).fit(x)
    with pytest.raises(ValueError, match="NaN"):
        MixtureClusterer(n_clusters=2).fit(np.where(x > 5, np.nan, x))
