"""DINO-QPM: the frozen ViT stays frozen, the adapter, the token cache, the stages and bad input."""

import pytest
import torch

from companion.classify import dino_qpm as dq
from companion.features import extract_features
from companion.models import Classifier


def tiny_vit(seed: int = 0, image_size: int = 16, dim: int = 16) -> dq.FrozenViT:
    torch.manual_seed(seed)
    return dq.frozen_vit("timm:vit_tiny_patch16_224", image_size=image_size, pretrained=False,
                         patch_size=4, embed_dim=dim, depth=1, num_heads=2)


def images(n: int = 24, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.arange(n) % 3
    x[:, y.clamp(max=2), :4, :4] += 0.5  # a weak class signal in one corner
    return torch.utils.data.TensorDataset(x, y)


def test_the_backbone_stays_frozen_while_the_adapter_trains():
    vit = tiny_vit()
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    adapter = dq.TokenAdapter(vit.num_features, dq.adapter_widths(12, 8, n_layers=2))
    adapter_before = {k: v.clone() for k, v in adapter.state_dict().items()}
    model = Classifier(dq.AdaptedViT(vit, adapter), 3)
    data = images()
    dq.fit(model, data, epochs=2, optimizer="adamw", lr=1e-2, batch_size=8, progress=False)
    fs = extract_features(model, data, maps=True, progress=False)
    qpm = dq.assign(fs, n_features=4, per_class=2, progress=False)
    dq.finetune(model, qpm.layer_, data, epochs=1, lr=1e-2, optimizer="adamw", batch_size=8,
                progress=False, extra_losses=dq.sparsity_losses())
    after = vit.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical
    assert all(not p.requires_grad and p.grad is None for p in vit.parameters())
    assert not vit.training  # put back in eval mode by every model.train()
    changed = [not torch.equal(adapter_before[k], v) for k, v in adapter.state_dict().items()]
    assert any(changed)


def test_frozen_vit_ignores_train_mode_and_gives_cls_and_tokens():
    vit = tiny_vit()
    vit.train()
    assert not vit.training and not vit.vit.model.training
    x = torch.rand(2, 3, 16, 16)
    cls, tokens = vit.forward_tokens(x)
    assert cls.shape == (2, 16) and tokens.shape == (2, 16, 4, 4)
    full = vit.vit.model.forward_features(x)
    assert torch.allclose(tokens[1, :, 0, 1], full[1, 2])  # row 0, column 1 = token 1 after CLS
    out = vit.forward_tokens(x.requires_grad_(True))[1]
    assert not out.requires_grad  # no graph: no gradient can reach the ViT


def test_adapter_is_a_per_token_mlp_with_nonnegative_maps():
    adapter = dq.TokenAdapter(6, (10, 5)).eval()
    x = torch.randn(3, 6, 4, 4)
    maps = adapter(x)
    assert maps.shape == (3, 5, 4, 4) and (maps >= 0).all()
    # a token's output depends on that token only
    y = x.clone()
    y[:, :, 0, 0] += 1.0
    same = (adapter(y) == maps).all(dim=1)
    assert same.sum() == 3 * 15 and not same[:, 0, 0].any()
    assert dq.adapter_widths(2048, 512) == (2048, 2048, 2048, 512)



def test_adapter_computes_what_its_convolutions_compute():
    """The rows of matrix products give the maps of the 1×1 convolutions with BatchNorm2d, in
    training (batch statistics, and the running ones move alike) and in evaluation."""
    import copy

    torch.manual_seed(0)
    adapter = dq.TokenAdapter(6, (10, 5))
    reference = copy.deepcopy(adapter)
    reference.rows = False
    x = torch.randn(3, 6, 4, 4)
    for mode in (True, False):
        adapter.train(mode), reference.train(mode)
        assert torch.allclose(adapter(x), reference(x), atol=1e-5)
    for ours, theirs in zip(adapter.mlp[1::3], reference.mlp[1::3], strict=True):
        assert torch.allclose(ours.running_mean, theirs.running_mean, atol=1e-6)
        assert torch.allclose(ours.running_var, theirs.running_var, atol=1e-6)
        assert ours.num_batches_tracked == theirs.num_batches_tracked == 1

def test_sparsity_losses_are_the_weighted_l1_of_maps_and_pooled_features():
    maps = torch.tensor([[[[1.0, -3.0]], [[2.0, 2.0]]]])  # (1, 2, 1, 2)
    terms = dq.sparsity_losses(map_weight=5.0, vector_weight=1.0)
    args = (maps, torch.zeros(1, 2), torch.eye(2), torch.tensor([0]))
    assert terms["map_l1"](*args).item() == pytest.approx(5 * 8 / 4)
    assert terms["vector_l1"](*args).item() == pytest.approx((1.0 + 2.0) / 2)


def test_token_cache_is_never_reused_for_another_backbone_or_image_size(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path))
    data = images(8)
    key = "tokens_same_name"
    a = dq.frozen_tokens(tiny_vit(0), data, cache_key=key, progress=False)
    again = dq.frozen_tokens(tiny_vit(0), data, cache_key=key, progress=False)
    assert torch.equal(a.maps, again.maps)
    other = dq.frozen_tokens(tiny_vit(1), data, cache_key=key, progress=False)
    assert not torch.allclose(other.maps, a.maps)  # other weights: recomputed
    bigger = images(8, size=32)
    vit32 = tiny_vit(0, image_size=32)
    b = dq.frozen_tokens(vit32, bigger, cache_key=key, progress=False)
    assert b.maps.shape[-2:] == (8, 8)
    key_a = dq.token_cache_key("timm:vit_small_patch14_dinov2.lvd142m", 224, "train", "cub-1")
    assert key_a != dq.token_cache_key("timm:vit_small_patch14_dinov2.lvd142m", 448, "train",
                                       "cub-1")


def test_stages_train_on_tokens_and_give_exactly_k_features_per_class():
    vit = tiny_vit()
    tokens = dq.frozen_tokens(vit, images(30), progress=False)
    recipe = dq.DinoQPMRecipe(hidden=12, n_features=8, dense_epochs=3, ft_epochs=2,
                              dense_batch=10, ft_batch=10)
    dense, history = dq.train_dense_adapter(tokens, 3, recipe, progress=False)
    assert history.epochs == 3
    fs = extract_features(dense, tokens.dataset(), maps=True, progress=False)
    qpm = dq.assign(fs, n_features=4, per_class=2, progress=False)
    assert (qpm.weight_ != 0).sum(1).tolist() == [2, 2, 2]
    assert float(qpm.problem_.bias.__abs__().max()) == 0.0  # no locality bias
    model, h = dq.fine_tune_adapter(dense, qpm.layer_, tokens, recipe, progress=False)
    assert {"map_l1", "vector_l1"} <= set(h.train_metrics)
    plain, h0 = dq.fine_tune_adapter(dense, qpm.layer_, tokens, recipe, sparsity=False,
                                     progress=False)
    assert "map_l1" not in h0.train_metrics
    # the dense model is not touched by fine-tuning; the image model gives the token model's logits
    assert isinstance(dense.head, torch.nn.Linear)
    x = images(4).tensors[0]
    on_images = dq.image_classifier(vit, model).eval()
    assert torch.allclose(on_images(x), model(vit.forward_features(x)), atol=1e-5)


@pytest.mark.parametrize("call, error, match", [
    (lambda: dq.frozen_vit("timm:no_such_vit_xyz", pretrained=False), ValueError,
     "timm has no model"),
    (lambda: dq.frozen_vit("timm:resnet18", pretrained=False), ValueError, "is not a ViT"),
    (lambda: tiny_vit()(torch.rand(1, 3, 18, 18)), ValueError, "16, 16"),
    (lambda: dq.TokenAdapter(4, ()), ValueError, "must be positive"),
])
def test_bad_input_is_refused_with_a_clear_message(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_smoke_recipe_keeps_plain_adamw_and_convolutions_the_full_one_is_fast(monkeypatch):
    from companion import runtime
    from companion.optim import fused_adamw

    monkeypatch.setattr(runtime, "_active", None)  # restored after the test
    recipes = {}
    for name in ("smoke", "full"):
        runtime.set_profile(name, device="cpu", real_data=False)
        recipes[name] = dq.DinoQPMRecipe.for_profile()
    assert (recipes["smoke"].fast, recipes["smoke"].optimizer) == (False, "adamw")
    assert (recipes["full"].fast, recipes["full"].optimizer) == (True, fused_adamw)
