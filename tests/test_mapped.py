"""Memory-mapped data: gathers a span of the file at a time, scratch files for derived copies, and a fit whose
resident memory does not grow with the file."""

import os
import sys
import threading
import time

import numpy as np
import pytest
import torch

import mixzoo
from mixzoo.data import datasets
from mixzoo.data.datasets import Dataset, preprocess
from mixzoo.data.mapped import gather, is_mapped, release, scratch, source, tag, take
from mixzoo.data.validation import check_data

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")


def _mapping_mib(path) -> float:
    """Resident MiB of the mappings of ``path`` in this process (from /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" in head[3]:  # a mapping's first line
                inside = len(head) >= 6 and head[5] == str(path)
            elif inside and head[0] == "Rss:":
                total += int(head[1])
    return total / 1024


def _mapped_file(tmp_path, rows=1_000_000, dim=32, seed=0):
    path = tmp_path / "x.npy"
    rng = np.random.default_rng(seed)
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    for s in range(0, rows, 200_000):
        data[s : s + 200_000] = rng.normal(size=(min(200_000, rows - s), dim)) + 4.0 * (np.arange(s, min(s + 200_000, rows)) % 3)[:, None]
    data.flush()
    del data
    return path, np.asarray(np.load(path, mmap_mode="r"))  # as mixzoo.data reads a .npy


def test_a_gather_of_random_rows_reads_a_span_at_a_time_where_a_plain_one_maps_the_whole_file(tmp_path):
    path, x = _mapped_file(tmp_path)  # 128 MB
    t = check_data(x)
    assert source(t) is x and source(torch.ones(3)) is None  # check_data marks the tensor as the file's
    idx = torch.randint(0, len(x), (20_000,), generator=torch.Generator().manual_seed(0)).sort().values  # repeats too
    release(x)
    got = take(t, idx)
    spans = _mapping_mib(path)
    plain = t.index_select(0, idx)
    whole = _mapping_mib(path)
    torch.testing.assert_close(got, plain, rtol=0, atol=0)
    with pytest.raises(ValueError, match="sort the indices"):
        take(t, idx.flip(0))
    assert spans < 16, spans  # one span of 8 MiB at a time
    assert whole > 100, whole  # 20000 random rows map most of the 128 MB (the kernel maps the pages around each)
    rows = idx.numpy()
    expected = x[rows]
    release(x)
    np.testing.assert_array_equal(gather(x, rows), expected)
    assert _mapping_mib(path) < 16


def test_scratch_arrays_live_in_a_removed_file_and_keep_their_values_once_released():
    a = scratch((1000, 4), np.float32)
    assert is_mapped(a) and a.shape == (1000, 4) and (a == 0).all()
    a[:] = np.arange(4000, dtype=np.float32).reshape(1000, 4)
    release(a)  # a shared map: the pages go back to the file, not lost
    np.testing.assert_array_equal(a[999], [3996, 3997, 3998, 3999])
    maps = open("/proc/self/maps").read()
    line = next(m for m in maps.splitlines() if "/mixzoo-" in m and m.split()[0].startswith(hex(a.ctypes.data)[2:]))
    assert line.endswith("(deleted)") and not os.path.exists(line.split()[5])  # nothing left in the folder


def test_preprocessing_a_mapped_file_writes_its_standardised_copy_to_a_mapped_file(tmp_path, monkeypatch):
    _, x = _mapped_file(tmp_path, rows=20_000, dim=6)
    monkeypatch.setattr(datasets, "SCRATCH_BYTES", 1)  # every copy of a mapped array goes to a file
    on_disk = preprocess(Dataset("x", x, None, None), scale="features")
    in_memory = preprocess(Dataset("x", np.array(x), None, None), scale="features")
    assert is_mapped(on_disk.x) and not is_mapped(in_memory.x)
    np.testing.assert_array_equal(on_disk.x, in_memory.x)
    np.testing.assert_allclose(on_disk.x.mean(0), 0, atol=1e-5)


def _peak_growth_mib(fn):
    """Run ``fn`` and return it with the largest growth of this process's resident memory while it ran, in MiB."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page / 2**20

    base, peak, done = rss(), [0.0], threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], rss() - base)
            time.sleep(0.001)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        out = fn()
    finally:
        done.set()
        thread.join()
    return out, peak[0]


def test_em_on_a_mapped_file_fits_as_in_memory_without_the_file_in_memory(tmp_path):
    path, x = _mapped_file(tmp_path, rows=2_000_000, dim=16)  # 128 MB
    t = check_data(x)
    start = t[:50_000].clone()

    def em(data):
        model = mixzoo.GaussianMixture(16, 3).initialize(start, seed=0)
        mixzoo.fit(model, "posterior", data, loss="em", epochs=2, batch_size=10_000, seed=0, progress=False)
        return model

    release(x)
    mapped, growth = _peak_growth_mib(lambda: em(t))
    assert growth < 64, growth  # the file is 128 MB; one random batch of 10000 rows maps nearly all of it
    assert _mapping_mib(path) < 16
    copy = em(torch.from_numpy(np.array(x)))
    for k, v in copy.state_dict().items():
        torch.testing.assert_close(mapped.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_a_tensor_keeps_its_file_through_check_data_and_a_tag_needs_the_same_memory(tmp_path):
    _, x = _mapped_file(tmp_path, rows=1000, dim=4)
    t = check_data(x)
    assert source(check_data(t)) is x  # fit checks the tensor again
    assert source(t[1:]) is None and source(t.clone()) is None  # a view or a copy is not the file
    assert source(tag(torch.ones(1000, 4), x)) is None


def test_a_torch_dataset_trains_as_its_rows_do_and_a_large_one_is_read_into_a_scratch_file(monkeypatch):
    from torch.utils.data import Dataset as TorchDataset
    from torch.utils.data import TensorDataset

    from mixzoo.data import torch_data
    from mixzoo.errors import MixzooInputError

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(200, 2, generator=g) + 4 * k for k in range(3)])

    def em(data):
        model = mixzoo.GaussianMixture(2, 3).initialize(x, seed=0)
        result = mixzoo.fit(model, "posterior", data, loss="em", epochs=3, seed=0, progress=False)
        return model, result.losses

    rows_model, rows_losses = em(x)
    ds_model, ds_losses = em(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)))  # (features, label) items
    assert ds_losses == rows_losses
    torch.testing.assert_close(ds_model.loc, rows_model.loc, rtol=0, atol=0)

    class Images(TorchDataset):  # 2 x 3 "images": each item is flattened to a row of 6
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.full((2, 3), float(i)) if i != 3 or not self.ragged else torch.ones(4)

    images = Images()
    images.ragged = False
    monkeypatch.setattr(torch_data, "SCRATCH_BYTES", 1)  # every dataset goes to a file
    t = check_data(images)
    assert t.shape == (5, 6) and source(t) is not None and float(t[4, 5]) == 4.0
    estimator = mixzoo.MixtureClusterer(n_clusters=2, epochs=1, random_state=0).fit(images)
    assert estimator.predict(images).shape == (5,)
    images.ragged = True
    with pytest.raises(MixzooInputError, match=r"data\[3\] has 4 values but data\[0\] has 6"):
        check_data(images)
    with pytest.raises(MixzooInputError, match="empty dataset"):
        check_data(TensorDataset(torch.zeros(0, 2)))


def test_a_users_edits_to_a_copy_on_write_map_survive_the_checks_and_the_fit(tmp_path):
    path, _ = _mapped_file(tmp_path, rows=300_000, dim=4)
    edited = np.load(path, mmap_mode="c")  # the user's own copy-on-write map, changed in memory only
    edited[:] = 3.0
    t = check_data(edited)  # its checks read it a block at a time: giving those pages back would undo the edit
    assert float(t.sum()) == 3.0 * edited.size and float(edited.sum(dtype=np.float64)) == 3.0 * edited.size
    from mixzoo.data.files import load_file

    loaded = load_file(str(path))  # mixzoo's own map of the file: read-only
    assert is_mapped(loaded.x) and not loaded.x.flags.writeable
