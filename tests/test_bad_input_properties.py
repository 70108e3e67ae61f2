"""Property-based checks: random, often malformed arrays give a valid result or mixzoo's own input error naming the
problem, never a crash, NaN or a bare ValueError from deep inside numpy, torch or scikit-learn."""

import re

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import mixzoo  # noqa: E402
from mixzoo import MixtureClusterer, MixzooInputError  # noqa: E402
from mixzoo.data.validation import check_data  # noqa: E402

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
TAME = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def arrays(draw, max_side=12):
    """Arrays of any numeric or odd dtype, any rank from 0 to 3, values from tame to NaN/inf/1e300."""
    kind = draw(st.sampled_from(["f8", "f4", "i8", "u1", "bool", "object", "str"]))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=max_side))
    if kind in ("f8", "f4"):
        elements = st.one_of(TAME, FLOATS) if kind == "f8" else st.one_of(TAME, st.floats(width=32))
        a = draw(hnp.arrays(np.dtype(kind), shape, elements=elements))
    elif kind in ("i8", "u1", "bool"):
        a = draw(hnp.arrays(np.dtype(kind), shape))
    elif kind == "object":
        a = np.empty(shape, dtype=object)
        a.flat[:] = draw(st.lists(st.one_of(TAME, st.text(max_size=2), st.none()), min_size=a.size, max_size=a.size))
    else:
        a = draw(hnp.arrays(np.dtype("U3"), shape))
    if draw(st.booleans()) and a.ndim == 2 and a.shape[0] > 1:
        a = a[::-1]  # negative strides
    return a


PROBLEMS = re.compile(
    r"Expected 2D array|Found array with dim \d|not numeric|Found array with 0 (sample|feature)\(s\)|NaN/inf values"
    r"|values as large as|n_samples=\d+ is (too few|fewer than n_clusters)|number of clusters must be"
    r"|X has \d+ features, but"
)
"""How mixzoo's refusals of an array name what is wrong with it (shape, type, size, values, K)."""


def _names_the_problem(err):
    assert PROBLEMS.search(str(err)), f"the message does not name the problem: {err}"


def _valid_proba(p, n, k):
    return p.shape == (n, k) and np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@SETTINGS
@given(arrays())
def test_check_data_returns_clean_float32_or_raises(a):
    try:
        t = check_data(a)
    except MixzooInputError:
        return
    assert t.dtype == torch.float32 and t.ndim == 2 and t.is_contiguous() and torch.isfinite(t).all()
    assert t.shape[0] >= 1 and t.shape[1] >= 1


@SETTINGS
@given(arrays(max_side=10), st.integers(min_value=-1, max_value=12))
def test_estimator_fit_gives_probabilities_or_names_the_problem(a, k):
    est = MixtureClusterer(n_clusters=k, epochs=2, n_init=1, random_state=0)
    try:
        est.fit(a)
    except MixzooInputError as err:  # mixzoo's own refusal: a bare ValueError from numpy, torch or sklearn fails
        _names_the_problem(err)
        return
    x = np.asarray(a, dtype=np.float64)
    assert _valid_proba(est.predict_proba(x), len(x), k)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
    return MixtureClusterer(n_clusters=2, epochs=20, random_state=0).fit(x)


@SETTINGS
@given(a=arrays(max_side=8))
def test_predict_proba_gives_probabilities_or_names_the_problem(fitted, a):
    try:
        p = fitted.predict_proba(a)
    except MixzooInputError as err:
        _names_the_problem(err)
        return
    assert _valid_proba(p, np.asarray(a).shape[0], 2)


@SETTINGS
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.just(2)), elements=st.one_of(TAME, FLOATS)))
def test_fit_function_trains_or_raises_a_clear_input_error(a):
    model, guide = mixzoo.GaussianMixture(2, 2), mixzoo.EmptyGuide()
    try:
        mixzoo.fit(model, guide, a, epochs=2, progress=False)
    except MixzooInputError:  # mixzoo's own refusal, not a ValueError from deep inside torch or numpy
        return
    assert _valid_proba(mixzoo.cluster_proba(model, guide, torch.as_tensor(a, dtype=torch.float32)).numpy(), len(a), 2)
