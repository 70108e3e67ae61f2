import json
import math
import re

import numpy as np
import pytest
import torch
from pyro.infer import TraceEnum_ELBO
from scipy import stats

import mixzoo
from mixzoo import EmptyGuide, GaussianMixture, MixzooInputError
from mixzoo.analysis.metrics import cluster_accuracy, hungarian_match
from mixzoo.app.cli import main
from mixzoo.app.estimator import MixtureClusterer
from mixzoo.models import get_family
from mixzoo.models.student_t import DiagonalStudentT, StudentTMixture

MEANS = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])
WEIGHTS = np.array([0.5, 0.3, 0.2])
SCALE = 0.5
DF = 2.0


def heavy_tailed(n=1500, seed=0, df=DF):
    """Three 2-D clusters of independent t_df(mean, 0.5) features (df 2: infinite variance)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=WEIGHTS)
    x = MEANS[labels] + SCALE * rng.standard_t(df, size=(n, 2))
    return torch.tensor(x, dtype=torch.float32), labels


def fit_pair(model, x, epochs=150, lr=0.05, seed=0):
    guide = EmptyGuide()
    model.initialize(x, seed=seed)
    mixzoo.fit(model, guide, x, epochs=epochs, lr=lr, progress=False, seed=seed)
    return model, guide


def test_recovers_parameters_and_small_df_on_heavy_tails():
    x, labels = heavy_tailed()
    model, guide = fit_pair(StudentTMixture(2, 3), x)
    pred = mixzoo.cluster_proba(model, guide, x).argmax(1).numpy()
    assert cluster_accuracy(labels, pred) > 0.97
    match = hungarian_match(labels, pred)
    with torch.no_grad():
        for k, cls in match.items():
            np.testing.assert_allclose(model.loc[k].numpy(), MEANS[cls], atol=0.1)
            np.testing.assert_allclose(model.scale[k].numpy(), [SCALE, SCALE], atol=0.15)
            assert model.weights[k].item() == pytest.approx(WEIGHTS[cls], abs=0.03)
            assert 1.3 < model.df[k].item() < 3.0  # true df 2


def test_learned_df_grows_on_gaussian_data(blobs):
    x = blobs[0]
    model, _ = fit_pair(StudentTMixture(2, 3), x)
    df = model.df.detach()
    assert (df > 15).all(), df  # starts at 5; Gaussian clusters push it towards the cap
    assert (df <= model.max_df).all()


def test_beats_the_gaussian_mixture_on_held_out_heavy_tailed_data():
    x, _ = heavy_tailed(2000, seed=1)
    train, held = x[:1500], x[1500:]
    t_model, t_guide = fit_pair(StudentTMixture(2, 3), train)
    g_model, g_guide = fit_pair(GaussianMixture(2, 3), train)
    t_ll = mixzoo.log_likelihood(t_model, t_guide, held).mean().item()
    g_ll = mixzoo.log_likelihood(g_model, g_guide, held).mean().item()
    assert math.isfinite(t_ll) and math.isfinite(g_ll)
    assert t_ll > g_ll + 0.3, (t_ll, g_ll)


def test_enumerated_loss_is_the_hand_computed_negative_log_likelihood():
    x, _ = heavy_tailed(200, seed=2)
    batch = x[:32]
    model = StudentTMixture(2, 3).initialize(x, seed=0)
    with torch.no_grad():
        model.df_logit.copy_(torch.tensor([-2.0, 0.0, 1.5]))
        model.log_scale.add_(torch.randn(3, 2, generator=torch.Generator().manual_seed(0)) * 0.3)
        model.logits.copy_(torch.tensor([0.3, -0.5, 0.1]))
        df, loc, scale = model.df, model.loc, model.log_scale.exp() + model.min_scale
        log_pi = torch.log_softmax(model.logits, -1)
        comp = torch.distributions.StudentT(df[:, None], loc, scale)  # batch (K, D)
        joint = log_pi + comp.log_prob(batch[:, None, :]).sum(-1)  # (N, K)
        expected = -torch.logsumexp(joint, -1).sum().item()
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, EmptyGuide(), batch)
    assert loss == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(mixzoo.cluster_log_joint(model, EmptyGuide(), batch), joint, rtol=1e-5, atol=1e-4)
    # the minibatch plate scales the subsample's log-likelihood up to the whole data
    idx = torch.arange(0, 200, 10)
    sub = TraceEnum_ELBO(max_plate_nesting=1).loss(model, EmptyGuide(), x, subsample=idx)
    with torch.no_grad():
        sub_joint = log_pi + comp.log_prob(x[idx][:, None, :]).sum(-1)
    assert sub == pytest.approx(-torch.logsumexp(sub_joint, -1).sum().item() * 200 / len(idx), rel=1e-5)


def test_diagonal_student_t_is_independent_student_t():
    g = torch.Generator().manual_seed(0)
    df = torch.rand(3, 1, generator=g) * 10 + 0.5
    loc, scale = torch.randn(3, 1, 4, generator=g), torch.rand(3, 1, 4, generator=g) + 0.1
    value = torch.randn(7, 4, generator=g) * 3
    d = DiagonalStudentT(df, loc, scale)
    assert d.batch_shape == (3, 1) and d.event_shape == (4,)
    reference = torch.distributions.StudentT(df[..., None], loc, scale)
    torch.testing.assert_close(d.log_prob(value), reference.log_prob(value).sum(-1))
    expanded = d.expand((3, 7))  # as a data plate expands it: the normaliser stays per component
    torch.testing.assert_close(expanded.log_prob(value), reference.log_prob(value).sum(-1))
    torch.manual_seed(0)
    draws = d.rsample((5000,))
    assert draws.shape == (5000, 3, 1, 4)
    torch.testing.assert_close(draws.median(0).values, loc, atol=0.1, rtol=0)


def test_observed_labels_fix_the_assignment():
    x, labels = heavy_tailed(600, seed=3)
    model, guide = StudentTMixture(2, 3), EmptyGuide()
    mixzoo.fit(model, guide, x, y=torch.as_tensor(labels), epochs=100, lr=0.1, progress=False, seed=0)
    pred = mixzoo.cluster_proba(model, guide, x).argmax(1).numpy()
    assert (pred == labels).mean() > 0.97  # identity matching: component k is class k


def test_sample_draws_student_t_components_reproducibly():
    model = StudentTMixture(2, 2)
    with torch.no_grad():
        model.loc.copy_(torch.tensor([[0.0, 1.0], [10.0, -3.0]]))
        model.log_scale.copy_(torch.tensor([[0.0, -1.0], [0.5, 0.0]]))
        model.df_logit.copy_(torch.tensor([model._df_logit(1.5), model._df_logit(30.0)]))
    state = torch.get_rng_state()
    x, k = model.sample(40000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())  # the global generator is left alone
    x2, k2 = model.sample(40000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and torch.equal(k, k2)
    assert x.shape == (40000, 2) and set(k.unique().tolist()) == {0, 1}
    torch.testing.assert_close(torch.bincount(k).float() / 40000, model.weights.detach(), atol=0.02, rtol=0)
    with torch.no_grad():
        for j, df in ((0, 1.5), (1, 30.0)):
            xj = x[k == j].numpy()
            np.testing.assert_allclose(np.median(xj, 0), model.loc[j].numpy(), atol=0.05 * model.scale[j].max().item())
            iqr = np.subtract(*np.percentile(xj, [75, 25], axis=0))
            expected = 2 * stats.t.ppf(0.75, df) * model.scale[j].numpy()
            np.testing.assert_allclose(iqr, expected, rtol=0.05)


def test_fixed_df_and_parameter_count():
    learned, fixed = StudentTMixture(3, 4), StudentTMixture(3, 4, df=4.0)
    assert learned.n_parameters() == 3 + 2 * 12 + 4
    assert fixed.n_parameters() == 3 + 2 * 12
    assert not hasattr(fixed, "df_logit") and torch.equal(fixed.df, torch.full((4,), 4.0))
    assert learned.df.detach() == pytest.approx([5.0] * 4)
    with pytest.raises(MixzooInputError, match="min_df < max_df"):
        StudentTMixture(2, 2, min_df=5.0, max_df=3.0)


def test_family_options_and_summary_parameters():
    family = get_family("student-t")
    assert family.cite.startswith("Peel and McLachlan") and family.default_loss == "trace-enum"
    model, guide = family.build_pair(2, 3, options={"min_df": 2.0})
    assert isinstance(model, StudentTMixture) and model.min_df == 2.0 and model.learns_df
    model, _ = family.build_pair(2, 3, options={"df": 3.0})
    assert not model.learns_df
    with pytest.raises(MixzooInputError, match="must be at least 0"):
        family.make_options({"df": -1.0})
    with pytest.raises(MixzooInputError, match="must be below --max-df"):
        family.make_options({"min_df": 50.0, "max_df": 10.0})
    x, _ = heavy_tailed(300, seed=4)
    model, guide = fit_pair(StudentTMixture(2, 3), x, epochs=30)
    data = mixzoo.summarize(model, guide, x, n_draws=20)
    names = set(data["posterior"].data_vars)
    assert names == {"weights", "loc", "scale", "df"}  # the natural quantities, not the raw parameters
    df = data["posterior"]["df"].values
    assert df.shape == (1, 20, 3) and (df >= 1.0).all() and df.std(axis=1).min() > 0
    assert np.isfinite(data["log_likelihood"]["x"].values).all()
    assert data["log_likelihood"]["x"].shape == (1, 20, 300)


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_cli_fit_json(capsys):
    assert main(["fit", "--model", "student-t", "--data", "moons", "--epochs", "5", "--no-progress", "--json"]) == 0
    rec = _last_json(capsys)
    assert rec["model"] == "student-t" and rec["guide"] == "empty" and rec["loss"] == "trace-enum"
    assert rec["n"] == 2000 and rec["clusters"] == 2 and rec["epochs"] == 5 and rec["acc"] > 0.75


@pytest.mark.parametrize(
    "args, message",
    [
        (["--df", "-1"], r"--df \(model 'student-t'\) must be at least 0"),
        (["--df", "many"], r"argument --df: invalid float value: 'many'"),
        (["--df", "4", "--min-df", "2"], "--min-df applies to model 'student-t' only with --df 0.0"),
        (["--min-df", "20", "--max-df", "10"], "--min-df .* must be below --max-df"),
        (["--covariance", "full"], r"--covariance is an option of model gmm; it does not apply to model 'student-t'"),
    ],
)
def test_cli_bad_option_is_one_line_and_exit_2(args, message, capsys):
    assert main(["fit", "--model", "student-t", "--data", "moons", "--epochs", "1", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mixzoo: error: ") and len(err.splitlines()) == 1, err
    assert re.search(message, err), err


def test_estimator_with_model_options():
    x, labels = heavy_tailed(900, seed=5)
    est = MixtureClusterer(model="student-t", n_clusters=3, model_options={"df": 2.0}, epochs=60, random_state=0)
    est.fit(x.numpy())
    assert torch.equal(est.model_.df, torch.full((3,), 2.0))
    assert cluster_accuracy(labels, est.labels_) > 0.97
    assert math.isfinite(est.bic(x.numpy())) and est.score(x.numpy()) > -4
    with pytest.raises(MixzooInputError, match="do not apply to model 'student-t'"):
        MixtureClusterer(model="student-t", n_clusters=3, model_options={"covariance": "full"}).fit(x.numpy())
