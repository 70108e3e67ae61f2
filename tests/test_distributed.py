"""Data-parallel SVI: two gloo processes on localhost against one process on the concatenated batches."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

import mixzoo
from mixzoo import MixzooInputError

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")

WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    import mixzoo, mixzoo.inference.data_parallel
    from mixzoo.models.gmvae import GMVAEGuide
    from mixzoo.inference import VIMCO
    from mixzoo.models import GMVAE
    family, out = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    x = torch.load(out + "/x.pt", weights_only=True)
    torch.manual_seed(0)
    if family == "gmm":
        model, guide = mixzoo.GaussianMixture(2, 3).initialize(x, seed=0), mixzoo.EmptyGuide()
        kwargs = {}
    elif family == "gmm-em":  # closed-form EM; the rows each process's steps read are recorded
        import mixzoo.inference.em as em
        read, take = [], em.take
        em.take = lambda t, idx: (read.append(idx.clone()), take(t, idx))[1]
        model, guide = mixzoo.GaussianMixture(2, 3).initialize(x, seed=0), "posterior"
        kwargs = {"loss": "em"}
    else:
        model, guide = GMVAE(2, 3, latent=2, hidden=(8,)), GMVAEGuide(2, 3, latent=2, hidden=(8,))
        kwargs = {"loss": VIMCO(num_particles=3)}
    r = mixzoo.fit(model, guide, x, epochs=3, batch_size=100, lr=0.03, seed=1, progress=False, distributed=True,
                   checkpoint=f"{out}/state-rank{rank}.pt", **kwargs)
    rows = torch.cat(read) if family == "gmm-em" else torch.zeros(0)
    guide_state = guide.state_dict() if hasattr(guide, "state_dict") else {}
    torch.save({"model": model.state_dict(), "guide": guide_state, "losses": r.losses, "rows": rows}, f"{out}/params-rank{rank}.pt")
    mixzoo.inference.data_parallel.leave()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(family, out, world=2):
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"}  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, family, str(out)], env=env, stderr=subprocess.PIPE, text=True
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err


def test_two_processes_match_one_process_on_the_concatenated_batches(blobs, tmp_path):
    x = blobs[0][:600]
    torch.save(x, tmp_path / "x.pt")
    _launch("gmm", tmp_path)
    ranks = [torch.load(tmp_path / f"params-rank{r}.pt", weights_only=True) for r in range(2)]
    torch.manual_seed(0)
    model, guide = mixzoo.GaussianMixture(2, 3).initialize(x, seed=0), mixzoo.EmptyGuide()
    single = mixzoo.fit(model, guide, x, epochs=3, batch_size=100, lr=0.03, seed=1, progress=False)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ranks[0]["model"][k], v, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ranks[1]["model"][k], ranks[0]["model"][k], rtol=0, atol=0)
    assert ranks[0]["losses"] == pytest.approx(single.losses, rel=1e-5)
    # 3 epochs of 6 steps moved the parameters: the comparison is not of two untouched initialisations
    assert not torch.allclose(ranks[0]["model"]["loc"], mixzoo.GaussianMixture(2, 3).initialize(x, seed=0).loc)
    # rank 0 alone writes the checkpoint
    assert (tmp_path / "state-rank0.pt").is_file() and not (tmp_path / "state-rank1.pt").exists()


def test_each_process_reads_only_its_own_rows_and_em_matches_one_process(blobs, tmp_path):
    x = blobs[0][:600]
    torch.save(x, tmp_path / "x.pt")
    _launch("gmm-em", tmp_path)
    ranks = [torch.load(tmp_path / f"params-rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["rows"].max() < 300 <= ranks[1]["rows"].min()  # rows 0-299 and 300-599
    assert sorted(torch.cat([r["rows"] for r in ranks]).tolist()) == sorted(list(range(600)) * 3)  # all, once an epoch
    torch.manual_seed(0)
    model = mixzoo.GaussianMixture(2, 3).initialize(x, seed=0)
    single = mixzoo.fit(model, "posterior", x, loss="em", epochs=3, batch_size=100, lr=0.03, seed=1, progress=False)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ranks[0]["model"][k], v, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ranks[1]["model"][k], ranks[0]["model"][k], rtol=0, atol=0)
    assert ranks[0]["losses"] == pytest.approx(single.losses, rel=1e-5)


def test_shards_by_range_or_by_turn_and_every_minibatch_gives_each_process_a_row():
    from mixzoo.inference.data_parallel import DistributedContext

    n, idx = 10, torch.tensor([9, 0, 4, 5, 2, 7])
    parts = [DistributedContext(r, 3).shard(idx, n, by_range=True) for r in range(3)]
    assert [p.tolist() for p in parts] == [[0, 2], [4, 5], [9, 7]]  # rows 0-2, 3-5, 6-9, in the batch's order
    turns = [DistributedContext(r, 3).shard(idx, n) for r in range(3)]  # gradient steps: a random share each
    assert [p.tolist() for p in turns] == [[9, 5], [0, 2], [4, 7]]
    for r in range(3):
        assert idx[DistributedContext(r, 3).mine(idx, n)].tolist() == turns[r].tolist()
    assert DistributedContext(0, 1).shard(idx, n) is idx
    ctx = DistributedContext(1, 2)
    batches = [torch.tensor([0, 1]), torch.tensor([2, 7]), torch.tensor([3, 4]), torch.tensor([8, 9])]
    covered = ctx.cover(batches, n, by_range=True)  # rows 0-4 and 5-9: [0, 1] lacks the second, [8, 9] the first
    assert [b.tolist() for b in covered] == [[0, 1, 2, 7], [3, 4, 8, 9]]
    assert [b.tolist() for b in ctx.cover(batches[:1], n, by_range=True)] == [[0, 1]]  # nothing to merge into
    assert ctx.cover(batches, n) == batches  # by turn, two rows give each of two processes one
    assert [b.tolist() for b in ctx.cover([*batches, torch.tensor([6])], n)][-1] == [8, 9, 6]  # a last row of one
    assert DistributedContext(0, 1).cover(batches, n) is batches


def test_multi_particle_loss_keeps_the_processes_in_step(blobs, tmp_path):
    x = blobs[0][:400]
    torch.save(x, tmp_path / "x.pt")
    _launch("gmvae", tmp_path)
    ranks = [torch.load(tmp_path / f"params-rank{r}.pt", weights_only=True) for r in range(2)]
    for part in ("model", "guide"):
        for k, v in ranks[0][part].items():
            torch.testing.assert_close(ranks[1][part][k], v, rtol=0, atol=0)
    assert all(torch.isfinite(torch.tensor(ranks[0]["losses"])))
    assert ranks[0]["losses"] == ranks[1]["losses"]


def test_torchrun_cli_writes_once_and_prints_once(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "mixzoo", "fit", "--model", "gmm", "--data", "moons", "--epochs", "3", "--batch-size", "128",
           "--out", str(out), "--checkpoint-every", "1", "--json", "--no-progress"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 1 and records[0]["processes"] == 2 and records[0]["acc"] > 0.8
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.json").is_file()


def test_distributed_without_a_process_group_is_a_clear_error(blobs):
    model, guide = mixzoo.GaussianMixture(2, 3), mixzoo.EmptyGuide()
    with pytest.raises(MixzooInputError, match="no torch.distributed process group"):
        mixzoo.fit(model, guide, blobs[0], epochs=1, distributed=True, progress=False)
