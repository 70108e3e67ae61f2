"""The parts of a user's model as a family, one by one and without training: naming, importing, checking the class,
the plan and the criteria. ``tests/test_user_model.py`` runs them end to end through the command line."""

from __future__ import annotations

import hashlib
import sys

import pyro
import pyro.distributions as dist
import pytest
import torch

from mixzoo.app.user_model import (
    _checked_class,
    _criteria,
    _load_class,
    _user_plan,
    file_digest,
    is_user_model,
    user_family,
)
from mixzoo.contract import ModelCapabilities
from mixzoo.errors import MixzooInputError
from mixzoo.models.family import DataShape, Inference

SOURCE = '''
import pathlib, pyro, pyro.distributions as dist, torch

pathlib.Path(__file__).with_suffix(".imported").write_text("yes")


class Blobs(pyro.nn.PyroModule):
    """Unit-variance blobs.

    A second line that the description leaves out."""

    def __init__(self, dim, n_clusters):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(n_clusters, dim))

    def forward(self, x, y=None, subsample=None):
        with pyro.plate("data", len(x), subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(logits=torch.zeros(len(self.loc))), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(self.loc[k], 1.0).to_event(1), obs=x[idx])


class Plain(torch.nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(kwargs["n_clusters"], kwargs["dim"]))

    def forward(self, x, y=None, subsample=None):
        pass


class Breaks(pyro.nn.PyroModule):
    def __init__(self, dim, n_clusters):
        raise ValueError("no such thing")

    def forward(self, x, y=None, subsample=None):
        pass


NOT_A_CLASS = 3
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / f"user_{tmp_path.name[-8:]}.py"
    path.write_text(SOURCE)
    yield path
    _load_class.cache_clear()


def test_a_model_is_a_users_when_it_names_a_class():
    assert is_user_model("file.py:Class") and is_user_model("pkg.mod:Class")
    assert not is_user_model("gmm") and not is_user_model("flow-mixture")


def test_the_digest_is_the_files_sha256_and_none_for_a_module_path(model_file):
    expected = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert file_digest(f"{model_file}:Blobs") == expected
    assert file_digest("pkg.mod:Blobs") is None
    assert file_digest(f"{model_file.with_name('missing.py')}:Blobs") is None
    model_file.write_text(SOURCE + "\n# changed\n")
    assert file_digest(f"{model_file}:Blobs") != expected
    odd = model_file.parent / "a:b" / "c:d"  # a folder with colons: the class is after the last one
    odd.mkdir(parents=True)
    (odd / "m.py").write_text("x = 1\n")
    assert file_digest(f"{odd / 'm.py'}:Blobs") == hashlib.sha256(b"x = 1\n").hexdigest()


def test_loading_a_class_imports_its_file_once_and_checks_the_class(model_file):
    marker = model_file.with_suffix(".imported")
    cls = _load_class(f"{model_file}:Blobs")
    assert cls.__name__ == "Blobs" and marker.read_text() == "yes"
    marker.unlink()
    assert _load_class(f"{model_file}:Blobs") is cls and not marker.exists()  # cached: not imported again
    assert any(m.startswith("mixzoo_user_") and getattr(sys.modules[m], "Blobs", None) is cls for m in sys.modules)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{file}", "write FILE.py:ClassName or package.module:ClassName"),
        ("{file}:not an identifier", "write FILE.py:ClassName"),
        ("{dir}/missing.py:Blobs", "does not exist"),
        ("no_such_module_anywhere:Blobs", "cannot import module 'no_such_module_anywhere'"),
        ("{file}:Missing", "has no class 'Missing'; its model classes are: Blobs, Breaks, Plain."),
        ("{file}:NOT_A_CLASS", "has no class 'NOT_A_CLASS'"),
    ],
)
def test_a_bad_name_is_one_clear_error(model_file, spec, message):
    name = spec.format(file=model_file, dir=model_file.parent)
    with pytest.raises(MixzooInputError) as err:
        _load_class(name)
    assert message in str(err.value) and str(err.value).startswith(f"--model {name!r}")


def test_a_file_that_fails_to_import_says_so(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('on purpose')\n")
    with pytest.raises(MixzooInputError, match=r"importing '.*broken.py' failed \(RuntimeError: on purpose\)"):
        _load_class(f"{path}:Anything")
    _load_class.cache_clear()


def test_the_class_check_names_what_is_wrong():
    class NotAModule:
        pass

    class NoDims(pyro.nn.PyroModule):
        def __init__(self, k, j):
            super().__init__()

        def forward(self, x, y=None, subsample=None):
            pass

    class NoSubsample(pyro.nn.PyroModule):
        def __init__(self, dim, n_clusters):
            super().__init__()

        def forward(self, x, y=None):
            pass

    class Kwargs(pyro.nn.PyroModule):
        def __init__(self, **kwargs):
            super().__init__()

        def forward(self, x, y=None, subsample=None):
            pass

    with pytest.raises(MixzooInputError, match="NotAModule is not a torch/Pyro module"):
        _checked_class(NotAModule, "m")
    with pytest.raises(MixzooInputError, match=r"constructed as NoDims\(dim=D, n_clusters=K\); its parameters are \(k, j\)"):
        _checked_class(NoDims, "m")
    with pytest.raises(MixzooInputError, match=r"NoSubsample.forward must take \(x, y=None, subsample=None\), it takes \(x, y\)"):
        _checked_class(NoSubsample, "m")
    assert _checked_class(Kwargs, "m") is Kwargs  # **kwargs takes dim and n_clusters


def _shape(n):
    return DataShape(n=n, dim=2, image_shape=None, levels=None)


def test_the_plan_is_full_batch_up_to_20000_points_and_slower_under_nce():
    options = object()
    plan = _user_plan(options, _shape(20000), Inference("empty", "trace-enum"))
    assert plan.options is options
    assert plan.training.batch_size is None and plan.training.epochs == 200 and plan.training.lr == 0.05
    assert plan.rescale is False  # a user's model sees the data in the user's units
    assert _user_plan(None, _shape(20001), Inference("empty", "trace-enum")).training.batch_size == 1024
    assert _user_plan(None, _shape(100), Inference("empty", "nce")).training.lr == 0.01


def test_criteria_follow_what_the_model_declares():
    class Counted:
        def n_parameters(self):
            return 3

    exact = ModelCapabilities()
    assert _criteria(Counted, exact) == ("bic", "icl", "heldout", "loo")
    assert _criteria(object, exact) == ("heldout", "loo")
    assert _criteria(Counted, ModelCapabilities(normalized=False)) == ("heldout",)
    assert _criteria(Counted, ModelCapabilities(local_latents=("z",))) == ("heldout",)


def test_the_family_builds_the_class_and_turns_a_torch_module_into_a_pyro_one(model_file):
    fam = user_family(f"{model_file}:Blobs")
    assert fam.name == f"{model_file}:Blobs" and fam.description == "Unit-variance blobs."
    assert fam.default_guide == "empty" and fam.default_loss == "trace-enum" and fam.cite == "your own model"
    assert fam.criteria == ("heldout", "loo") and "n_parameters" in fam.criteria_note
    model = fam.build(3, 4, None)
    assert tuple(model.loc.shape) == (4, 3)
    plain = user_family(f"{model_file}:Plain").build(2, 5, None)
    assert isinstance(plain, pyro.nn.PyroModule) and tuple(plain.loc.shape) == (5, 2)
    with pytest.raises(MixzooInputError, match=r"Breaks\(dim=2, n_clusters=3\) failed \(no such thing\)"):
        user_family(f"{model_file}:Breaks").build(2, 3, None)


def test_a_class_given_directly_is_named_by_its_module_and_qualified_name():
    class Local(pyro.nn.PyroModule):
        """Local."""

        def __init__(self, dim, n_clusters):
            super().__init__()
            self.loc = torch.nn.Parameter(torch.zeros(n_clusters, dim))

        def forward(self, x, y=None, subsample=None):
            with pyro.plate("data", len(x)):
                pyro.sample("y", dist.Categorical(logits=torch.zeros(2)), infer={"enumerate": "parallel"})

    fam = user_family(Local)
    assert fam.name == f"{__name__}:{Local.__qualname__}"
    assert fam.default_guide == "empty"

    class NotPyro:
        pass

    with pytest.raises(MixzooInputError, match=r"^--model 'NotPyro': NotPyro is not a torch/Pyro module"):
        user_family(NotPyro)
