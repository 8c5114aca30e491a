"""VPP's pretraining: the script on a reduced budget and the checkpoint API."""

import pytest
import torch

from companion.io import CorruptFileError, save_atomic
from companion.vpp.pretrain import CHECKPOINT, PretrainConfig, load, load_or_train, pretrain, save


def test_pretraining_script_learns_on_a_small_budget():
    config = PretrainConfig(n_videos=6, n_frames=3, image_size=32, patch_size=8, dim=16,
                            dense_epochs=6, dense_lr=3e-3, dense_batch=6, sparse_epochs=1,
                            sparse_batch=6, frame_range=1)
    models = pretrain(config, seed=0, device="cpu", progress=False)
    dense = models.histories["dense"].train_loss
    assert dense[-1] < 0.8 * dense[0]
    assert models.vpp.schedule.map_block == 1 and models.svit.schedule.map_block is None
    assert models.histories["vpp"].epochs == 1 and models.histories["dense-ft"].epochs == 1
    assert models.dense.config.dim == 16 and models.dense.config.patch_size == 8



def test_saved_models_load_back_with_the_same_outputs(tmp_path):
    config = PretrainConfig(n_videos=2, n_frames=3, image_size=32, patch_size=8, dim=16,
                            dense_epochs=1, dense_batch=2, sparse_epochs=1, sparse_batch=2,
                            frame_range=1)
    models = pretrain(config, seed=0, device="cpu", progress=False)
    path = save(models, tmp_path / "vpp.pt")
    loaded = load_or_train(path, config=config, progress=False)
    assert loaded.config == config and loaded.vpp.schedule == models.vpp.schedule
    frame = torch.rand(1, 3, 32, 32)
    # saved in half precision: outputs agree to half-precision accuracy
    assert torch.allclose(loaded.dense(frame)["masks"], models.dense(frame)["masks"], atol=0.05)


def test_committed_checkpoint_loads():
    models = load()
    assert models.dense.config.image_size == models.config.image_size == 96
    assert models.dense.config.patch_size == models.config.patch_size
    assert models.vpp.schedule.map_block == 1 and models.svit.schedule.map_block is None


def test_bad_checkpoints_name_the_file_and_the_remedy(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint at .*missing.pt"):
        load(tmp_path / "missing.pt")
    path = tmp_path / "vpp_smoke.pt"
    path.write_bytes(CHECKPOINT.read_bytes()[:100_000])
    for call in (lambda: load(path), lambda: load_or_train(path, progress=False)):
        with pytest.raises(CorruptFileError, match=r"vpp_smoke.pt is truncated .*retrain=True"):
            call()
    save_atomic({"format": "companion.usam.segmenters/1"}, tmp_path / "usam.pt")
    with pytest.raises(CorruptFileError, match=r"usam.pt is not a checkpoint of format"):
        load(tmp_path / "usam.pt")
    state = torch.load(CHECKPOINT, weights_only=True)
    state["vpp"] = state["dense"]  # a dense model's weights where the pruned one belongs
    save_atomic(state, tmp_path / "swapped.pt")
    with pytest.raises(CorruptFileError, match=r"swapped.pt holds weights that do not fit"):
        load(tmp_path / "swapped.pt")
