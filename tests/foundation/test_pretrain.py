"""The smoke world's ViT: the pretraining script on a reduced budget, the checkpoint, the probes."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from companion.data.concept_parts import make_concept_parts
from companion.foundation import pretrain as pt
from companion.foundation.pretrain import (
    CHECKPOINT,
    PretrainConfig,
    block_mask,
    disjoint_classes,
    load,
    load_or_train,
    patchify,
    pretraining_data,
)
from companion.foundation.probes import few_shot_indices, probe_scores
from companion.io import CorruptFileError

SMALL = PretrainConfig(image_size=32, dim=32, depth=1, heads=2, n_images=300, n_classes=6,
                       siblings=3, epochs=10, batch_size=30, lr=3e-3)


def test_pretraining_script_learns_on_a_small_budget_and_round_trips(tmp_path):
    done = load_or_train(tmp_path / "vit.pt", config=SMALL, progress=False)
    loss = done.history.train_loss
    assert done.history.epochs == 10 and loss[-1] < 0.9 * loss[0]
    assert all(not p.requires_grad for p in done.vit.parameters())
    again = load_or_train(tmp_path / "vit.pt", config=SMALL, progress=False)  # loaded, not trained
    assert again.config == SMALL and again.history.train_loss == loss
    x = torch.rand(2, 3, 32, 32)
    # saved in half precision: tokens agree to half-precision accuracy
    assert torch.allclose(again.vit(x), done.vit(x), atol=0.05)


def test_masked_objective_learns_without_reading_a_label(tmp_path):
    config = replace(SMALL, objective="masked", epochs=6)
    done = load_or_train(tmp_path / "masked.pt", config=config, progress=False)
    mse = done.history.train_metrics["masked_mse"]
    assert mse[-1] < 0.8 * mse[0]
    assert pt.load(tmp_path / "masked.pt").config.objective == "masked"
    # the loss is the same whatever the labels say
    model = pt._MaskedTokens(pt.build_vit(config))
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    loss = pt._masked_loss(config)
    torch.manual_seed(3)
    a = loss(model, (x, y))[0]
    torch.manual_seed(3)
    assert torch.equal(loss(model, (x, torch.full_like(y, -7)))[0], a)


def test_block_mask_hides_whole_blocks_at_the_ratio_and_patchify_follows_token_order():
    torch.manual_seed(0)
    hidden = block_mask(50, 8, 2, 0.5).view(50, 4, 2, 4, 2)
    assert (hidden.sum((1, 2, 3, 4)) == 32).all()  # 8 of 16 blocks of 4 patches
    assert (hidden == hidden[:, :, :1, :, :1]).all()  # constant within every block
    odd = block_mask(3, 5, 2, 0.25)  # a 5x5 grid: blocks cut at the edge
    assert odd.shape == (3, 25) and odd.any(1).all()
    x = torch.arange(2 * 3 * 4 * 6.0).view(2, 3, 4, 6)
    patches = patchify(x, 2)
    assert patches.shape == (2, 6, 12)
    assert torch.equal(patches[1, 4], x[1, :, 2:4, 2:4].reshape(-1))  # row 1, column 1


def test_pretraining_classes_are_disjoint_from_the_chapters():
    a = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]], dtype=torch.bool)
    b = torch.tensor([[0, 1, 1, 0]], dtype=torch.bool)
    assert disjoint_classes(a, b).tolist() == [True, False, True]
    # excluding the pretraining classes themselves leaves nothing
    same = PretrainConfig(n_images=100, n_classes=10, siblings=3, data_seed=0)
    assert len(pretraining_data(same)) == 0
    data = pretraining_data(PretrainConfig(n_images=200))
    chapter = make_concept_parts(10, image_size=48, n_classes=10, seed=0)
    used = make_concept_parts(10, image_size=48, n_classes=24, siblings=6, seed=1234)
    assert disjoint_classes(used.class_parts, chapter.class_parts).all()
    assert int(data.tensors[1].max()) == 23


def test_committed_checkpoint_loads():
    done = load()
    assert done.config == PretrainConfig() and done.seed == 0
    assert done.vit(torch.rand(1, 3, 64, 64)).shape == (1, 96, 8, 8)


def test_bad_checkpoints_name_the_file_and_the_remedy(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint at .*missing.pt"):
        load(tmp_path / "missing.pt")
    path = tmp_path / "vit_smoke.pt"
    path.write_bytes(CHECKPOINT.read_bytes()[:10_000])
    with pytest.raises(CorruptFileError, match=r"vit_smoke.pt is truncated .*retrain=True"):
        load(path)


def test_probes_separate_informative_from_random_features():
    rng = np.random.default_rng(0)
    y = np.arange(400) % 4
    informative = np.eye(4)[y] * 3 + rng.normal(size=(400, 4))
    noise = rng.normal(size=(400, 4))
    good = probe_scores(informative[:200], y[:200], informative[200:], y[200:], k=5)
    bad = probe_scores(noise[:200], y[:200], noise[200:], y[200:], k=5)
    assert set(good) == {"linear", "10-shot", "5-NN"}
    assert min(good.values()) > 0.8 and max(bad.values()) < 0.45
    idx = few_shot_indices(y[:200], 10)
    assert np.bincount(y[idx]).tolist() == [10, 10, 10, 10]
    with pytest.raises(ValueError, match="fewer than shots=60"):
        few_shot_indices(y[:200], 60)


def test_committed_comparison_matches_the_shipped_checkpoint(tmp_path):
    from companion.classify import dino_qpm as dq
    from companion.classify.data import load_data
    from companion.foundation.compare import read_results
    from companion.runtime import set_profile

    results = read_results()
    rows = results["backbones"]
    assert list(rows)[:3] == ["random weights", "labels (shipped)", "masked patches"]
    assert all(list(r) == list(rows["random weights"]) for r in rows.values())
    assert all(0 <= v <= 1 for r in rows.values() for v in r.values())
    assert list(results["label_free"]) == list(rows)[2:] and list(results["hits"]) == list(rows)
    for name, hits in results["hits"].items():  # the hits are the accuracy, image by image
        assert len(hits) == 1000 and hits.count("1") / 1000 == pytest.approx(
            rows[name]["DINO-QPM accuracy"], abs=1e-6)
    assert all(run["config"]["objective"] == "masked" for run in results["label_free"].values())
    # a stale file would not match the checkpoint: recompute the shipped row's pooled probes
    set_profile("smoke")
    data, vit = load_data("concept_parts"), load().vit
    train = dq.frozen_tokens(vit, data.eval_train, progress=False)
    test = dq.frozen_tokens(vit, data.test, progress=False)
    again = probe_scores(train.pooled, train.labels, test.pooled, test.labels)
    assert again == {k.removeprefix("pooled "): v for k, v in rows["labels (shipped)"].items()
                     if k.startswith("pooled ")}
    with pytest.raises(FileNotFoundError, match="python -m companion.foundation.compare"):
        read_results(tmp_path / "none.json")
