"""The model of "Writing a model" in docs/your-model.md, as a user writes it in a file: unit-variance Gaussian
components with learned means, the cluster site enumerated, nothing else stated (no table, no start)."""

import pyro
import pyro.distributions as dist
import torch


class MyMixture(pyro.nn.PyroModule):
    def __init__(self, dim, n_clusters):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.randn(n_clusters, dim))

    def forward(self, x, y=None, subsample=None):
        with pyro.plate("data", len(x), subsample=subsample) as idx:
            k = pyro.sample("y", dist.Categorical(logits=torch.zeros(len(self.loc))),
                            obs=None if y is None else y[idx], infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(self.loc[k], 1.0).to_event(1), obs=x[idx])
