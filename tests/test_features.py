"""Tests of feature extraction and its on-disk cache."""

import pytest
import torch

from companion.features import FeatureSet, extract_features, weights_fingerprint
from companion.models import Classifier, create_backbone


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path))


def setup(n=20):
    torch.manual_seed(0)
    model = Classifier(create_backbone("small_cnn", width=8), num_classes=3)
    x = torch.rand(n, 3, 16, 16)
    y = torch.arange(n) % 3
    return model, x, y


def count_forwards(model):
    calls = {"n": 0}
    original = model.backbone.forward_features

    def counted(x):
        calls["n"] += 1
        return original(x)
    model.backbone.forward_features = counted
    return calls


def direct(model, x):
    model.eval()
    with torch.no_grad():
        _, pooled, maps = model.forward_all(x)
    return pooled, maps


def test_matches_a_direct_forward_pass_in_eval_mode():
    model, x, y = setup()
    model.train()
    feats = extract_features(model, (x, y), batch_size=6, maps=True, device="cpu", progress=False)
    assert model.training  # mode restored
    pooled, maps = direct(model, x)
    assert isinstance(feats, FeatureSet) and len(feats) == 20 and feats.num_features == 8
    torch.testing.assert_close(feats.pooled, pooled)
    torch.testing.assert_close(feats.maps, maps)
    torch.testing.assert_close(feats.pooled, feats.maps.mean(dim=(2, 3)))
    assert torch.equal(feats.labels, y)


def test_cache_is_reused_without_a_forward_pass(tmp_path):
    model, x, y = setup()
    first = extract_features(model, (x, y), cache_key="toy", device="cpu", progress=False)
    assert (tmp_path / "features" / "toy.pt").exists()
    assert [p.name for p in (tmp_path / "features").iterdir()] == ["toy.pt"]
    calls = count_forwards(model)
    again = extract_features(model, (x, y), cache_key="toy", device="cpu", progress=False)
    assert calls["n"] == 0
    assert torch.equal(again.pooled, first.pooled) and torch.equal(again.labels, first.labels)
    assert again.maps is None


def test_cache_is_invalidated_by_new_weights_length_or_missing_maps():
    model, x, y = setup()
    extract_features(model, (x, y), cache_key="toy", device="cpu", progress=False)
    calls = count_forwards(model)
    with torch.no_grad():
        model.backbone.blocks[0][0].weight.mul_(2.0)
    changed = extract_features(model, (x, y), cache_key="toy", device="cpu", progress=False)
    assert calls["n"] > 0
    torch.testing.assert_close(changed.pooled, direct(model, x)[0])

    calls["n"] = 0
    shorter = extract_features(model, (x[:10], y[:10]), cache_key="toy", device="cpu", progress=False)
    assert calls["n"] > 0 and len(shorter) == 10

    calls["n"] = 0
    with_maps = extract_features(model, (x[:10], y[:10]), cache_key="toy", maps=True, device="cpu",
                                 progress=False)
    assert calls["n"] > 0 and with_maps.maps.shape == (10, 8, 2, 2)


def test_fingerprint_sees_buffers_and_values():
    model, x, _ = setup()
    before = weights_fingerprint(model)
    model.train()
    model(x)  # updates BatchNorm running statistics only
    assert weights_fingerprint(model) != before
    clone, _, _ = setup()
    clone.load_state_dict(model.state_dict())
    assert weights_fingerprint(clone) == weights_fingerprint(model)


def test_backbone_and_unlabelled_data():
    model, x, _ = setup()
    feats = extract_features(model.backbone, (x,), device="cpu", progress=False)
    assert torch.equal(feats.labels, torch.full((20,), -1))
    torch.testing.assert_close(feats.pooled, direct(model, x)[0])
    with pytest.raises(ValueError, match="cache_key"):
        extract_features(model, (x,), cache_key="../escape", device="cpu", progress=False)
    with pytest.raises(TypeError, match="forward_all"):
        extract_features(torch.nn.Linear(3, 3), (x,), device="cpu", progress=False)


def test_cache_is_keyed_on_the_data_not_only_its_length():
    model, x, y = setup()
    first = extract_features(model, (x, y), cache_key="toy", device="cpu", progress=False)
    other = torch.rand_like(x)  # other images, same length, same labels
    calls = count_forwards(model)
    second = extract_features(model, (other, y), cache_key="toy", device="cpu", progress=False)
    assert calls["n"] > 0
    torch.testing.assert_close(second.pooled, direct(model, other)[0])
    assert not torch.allclose(second.pooled, first.pooled)
    calls["n"] = 0
    relabelled = extract_features(model, (other, (y + 1) % 3), cache_key="toy", device="cpu",
                                  progress=False)
    assert calls["n"] > 0 and torch.equal(relabelled.labels, (y + 1) % 3)
    calls["n"] = 0
    again = extract_features(model, (other, (y + 1) % 3), cache_key="toy", device="cpu",
                             progress=False)
    assert calls["n"] == 0 and torch.equal(again.pooled, relabelled.pooled)


def test_non_finite_features_are_refused_and_not_cached(tmp_path):
    model, x, y = setup()
    x[[4, 11]] = float("nan")
    with pytest.raises(ValueError, match=r"features of 2 of 20 samples .*samples \[4, 11\]"):
        extract_features(model, (x, y), cache_key="toy", batch_size=6, device="cpu", progress=False)
    assert not (tmp_path / "features" / "toy.pt").exists()
