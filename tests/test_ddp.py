"""DistributedDataParallel (gloo, 2 processes on this machine, loopback only) over a model of our
layers trains to the same parameters as one process on the combined batch."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.testing import assert_close

import torch_convpool as tc

STEPS, BATCH, WORLD = 3, 8, 2


def _model() -> nn.Module:
    torch.manual_seed(0)
    # no BatchNorm: its statistics would be per process (SyncBatchNorm is another matter)
    return nn.Sequential(
        tc.Conv2d(3, 8, 3, padding=1), nn.ReLU(), tc.MaxPool2d(2),
        tc.DepthwiseSeparableConv2d(8, 16, 3, padding=1), nn.ReLU(), tc.AvgPool2d(2),
        tc.ConvTranspose2d(16, 8, 2, stride=2), tc.GlobalAvgPool2d(flatten=True), nn.Linear(8, 5),
    )


def _data():
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(STEPS, BATCH, 3, 16, 16, generator=generator),
            torch.randint(0, 5, (STEPS, BATCH), generator=generator))


def _train(model: nn.Module, images, labels, part: slice) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(STEPS):
        loss = nn.functional.cross_entropy(model(images[step, part]), labels[step, part])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _worker(rank: int, store: str, result: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        model = nn.parallel.DistributedDataParallel(_model())
        images, labels = _data()
        half = BATCH // WORLD
        _train(model, images, labels, slice(rank * half, (rank + 1) * half))
        if rank == 0:
            torch.save(model.module.state_dict(), result)
        # Both ranks done before either tears down: a rank that closed its gloo pairs while the
        # other was still saving once aborted the other ("terminate called without an active
        # exception", SIGABRT in a CI run).
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_ddp_on_two_processes_equals_one_process_on_the_combined_batch(tmp_path, monkeypatch):
    result = str(tmp_path / "ddp.pt")
    # gloo on the loopback interface: nothing leaves the machine
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    # gloo's teardown has now and then aborted a rank after the work was done (SIGABRT, "terminate
    # called without an active exception", despite the barrier): such a crash is run once more,
    # with a fresh store; the assertions below still judge the result.
    for attempt in range(2):
        try:
            mp.spawn(_worker, args=(str(tmp_path / f"store{attempt}"), result), nprocs=WORLD,
                     join=True)
            break
        except mp.ProcessExitedException:
            if attempt == 1:
                raise
    distributed = torch.load(result)

    single = _model()
    images, labels = _data()
    _train(single, images, labels, slice(None))
    # DDP averages the two halves' gradients: the mean loss's gradient over the whole batch. The
    # sums run in another order (two halves, then their mean), and three momentum steps carry the
    # float32 differences on: a full-suite run once saw one weight near zero miss atol 1e-6.
    for key, value in single.state_dict().items():
        assert_close(distributed[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert not torch.equal(distributed["0.weight"], _model().state_dict()["0.weight"])
