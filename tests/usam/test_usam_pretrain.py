"""USAM's pretraining: training prompts, the multi-mask loss, the script, and its checkpoint API."""

import pytest
import torch

from companion.data.ambiguous_shapes import make_ambiguous_shapes
from companion.data.prompts import sample_prompts
from companion.io import CorruptFileError, save_atomic
from companion.usam.pretrain import (
    CHECKPOINT,
    PretrainConfig,
    load,
    load_or_train,
    multimask_loss,
    pretrain,
    save,
    training_cpu_seconds,
    training_prompts,
)
from companion.usam.records import predict_instances
from companion.usam.segmenter import NOT_A_POINT, create_segmenter


def test_training_prompts_lie_on_the_mask():
    torch.manual_seed(0)
    masks = torch.zeros(64, 16, 16)
    masks[:, 4:9, 5:12] = 1
    centre = torch.tensor([[8, 6]]).expand(64, 2)
    points, labels = training_prompts(masks, centre)
    real = labels == 1
    assert (labels[:, 0] == 1).all() and ((labels == 1) | (labels == NOT_A_POINT)).all()
    pts = points[real].long()
    assert masks[0, pts[:, 1], pts[:, 0]].all()
    assert (real.sum(1) == 1).any() and (real.sum(1) > 1).any()


def test_loss_trains_the_segmenter():
    """A few Adam steps on one batch must raise the best-of-3 IoU (the loss reaches the masks)."""
    torch.manual_seed(0)
    model = create_segmenter("tiny", device="cpu")
    masks = torch.zeros(16, 32, 32)
    for i in range(16):
        masks[i, 4 + i:14 + i, 6:20] = 1
    images = masks[:, None].expand(-1, 3, -1, -1) * 0.8 + 0.1
    centre = torch.tensor([[12.0, 9.0]]) + torch.tensor([[0.0, 1.0]]) * torch.arange(16)[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss, info = multimask_loss(model, (images, masks, centre))
        first = info["best_iou"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert info["best_iou"] > first + 0.2


def test_pretraining_on_a_small_budget_learns(tmp_path):
    """The checkpoint script, re-run on a reduced budget, must beat an untrained segmenter."""
    config = PretrainConfig(n_images=150, epochs={"tiny": 3}, batch_size=32)
    trained = pretrain(config, device="cpu", progress=False)["tiny"]
    path = save({"tiny": trained}, tmp_path / "seg.pt", config)
    loaded = load(path, device="cpu")["tiny"]
    data = make_ambiguous_shapes(40, seed=99, progress=False)
    prompts = sample_prompts(data.masks, 1, seed=0)
    torch.manual_seed(0)
    fresh = create_segmenter("tiny", device="cpu").eval()
    best = {k: predict_instances(m, data, prompts.centre, device="cpu", progress=False).iou_best.mean()
            for k, m in (("trained", loaded), ("fresh", fresh))}
    assert best["trained"] > best["fresh"] + 0.15 and best["trained"] > 0.35, best
    assert load_or_train(path, device="cpu")["tiny"].config == trained.config


def test_committed_checkpoint_sizes_differ_in_quality():
    segs = load(CHECKPOINT, device="cpu")
    assert list(segs) == ["tiny", "small", "large"]
    data = make_ambiguous_shapes(60, seed=123, progress=False)
    prompts = sample_prompts(data.masks, 8, seed=0)
    best = {k: predict_instances(m, data, prompts.centre, device="cpu", progress=False).iou_best.mean()
            for k, m in segs.items()}
    assert best["tiny"] + 0.02 < best["small"] < best["large"] - 0.02, best
    assert best["large"] > 0.75, best


def test_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint at .*missing.pt"):
        load(tmp_path / "missing.pt")
    save_atomic({"format": "something else"}, tmp_path / "bad.pt")
    with pytest.raises(CorruptFileError, match=r"bad.pt is not a checkpoint of format"):
        load(tmp_path / "bad.pt")


def test_a_truncated_checkpoint_names_the_file_and_the_remedy(tmp_path):
    """A half-copied file fails loudly in load and in load_or_train (never a silent retrain)."""
    path = tmp_path / "segmenters.pt"
    path.write_bytes(CHECKPOINT.read_bytes()[:50_000])
    for call in (lambda: load(path), lambda: load_or_train(path, progress=False)):
        with pytest.raises(CorruptFileError, match=r"segmenters.pt is truncated .*retrain=True"):
            call()


def test_weights_of_other_models_name_the_file(tmp_path):
    payload = torch.load(CHECKPOINT, weights_only=True)
    entry = payload["models"]["tiny"]
    entry["state_dict"] = {k: v for k, v in entry["state_dict"].items() if "hypernet" not in k}
    save_atomic(payload, tmp_path / "other.pt")
    with pytest.raises(CorruptFileError, match=r"other.pt holds weights that do not fit"):
        load(tmp_path / "other.pt")


def test_the_training_cpu_time_travels_with_the_checkpoint(tmp_path):
    model = create_segmenter("tiny", device="cpu")
    assert training_cpu_seconds(save({"tiny": model}, tmp_path / "a.pt", cpu_seconds=12.5)) == 12.5
    assert training_cpu_seconds(save({"tiny": model}, tmp_path / "b.pt")) is None
