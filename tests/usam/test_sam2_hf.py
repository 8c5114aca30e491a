"""SAM 2.1 through transformers: token extraction on a tiny random model, official-head loading."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from companion.usam.records import GAPS
from companion.usam.sam2_hf import OFFICIAL_HEADS, Sam2Tokens, load_official_heads, predict_sam2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from sam2_fixture import TOKEN_DIM as D  # noqa: E402
from sam2_fixture import official_mlp_state, tiny_sam2_processor  # noqa: E402
from sam2_fixture import tiny_sam2 as random_sam2  # noqa: E402


@pytest.fixture(scope="module")
def tiny_sam2():
    """A randomly initialised SAM 2 small enough for a unit test (no download)."""
    return Sam2Tokens(random_sam2(), tiny_sam2_processor())


def test_tokens_are_paired_with_their_own_mask(tiny_sam2):
    decoder = tiny_sam2.model.mask_decoder
    seen = {}
    hooks = [decoder.register_forward_pre_hook(
                 lambda m, args, kwargs: seen.update(hires=kwargs["high_resolution_features"]),
                 with_kwargs=True),
             decoder.upscale_conv2.register_forward_hook(lambda m, i, o: seen.update(up=o))]
    torch.manual_seed(1)
    x = torch.rand(2, 3, 128, 128)
    points = torch.tensor([[[10.0, 20.0], [30.0, 40.0]], [[50.0, 60.0], [70.0, 80.0]]])
    try:
        out = tiny_sam2(x, points)
    finally:
        for h in hooks:
            h.remove()
    assert out.mask_logits.shape == (2, 3, 32, 32)
    assert out.scores.shape == (2, 3)
    assert out.iou_token.shape == (2, D) and out.mask_tokens.shape == (2, 3, D)
    # reference: multimask output j = hypernetwork j + 1 of *its own* token times the upscaled map
    upscaled = decoder.activation(seen["up"] + seen["hires"][0]).flatten(2)  # (B, C, HW)
    scale = out.mask_logits.abs().max()  # a random model's logits are tiny: compare to their size
    with torch.no_grad():
        for j in range(3):
            hyper = decoder.output_hypernetworks_mlps[j + 1](out.mask_tokens[:, j])
            mask = torch.einsum("bc,bcn->bn", hyper, upscaled).view(2, 32, 32)
            assert torch.allclose(mask, out.mask_logits[:, j], rtol=1e-3, atol=1e-4 * scale)
            # the neighbour's token (the official pairing) does not make this mask
            other = decoder.output_hypernetworks_mlps[j + 1](tiny_sam2._tokens[:, 0, 2 + j])
            wrong = torch.einsum("bc,bcn->bn", other, upscaled).view(2, 32, 32)
            assert (wrong - out.mask_logits[:, j]).abs().max() > 0.02 * scale
        # the predicted IoUs are the IoU head applied to the IoU token (multimask slice 1:)
        assert torch.allclose(decoder.iou_prediction_head(out.iou_token)[:, 1:], out.scores,
                              atol=1e-5)


def test_official_pairing_gives_each_mask_the_token_before_its_own(tiny_sam2):
    torch.manual_seed(2)
    x, points = torch.rand(1, 3, 128, 128), torch.tensor([[[40.0, 50.0]]])
    own = tiny_sam2(x, points)
    official = Sam2Tokens(tiny_sam2.model, pairing="official")(x, points)
    assert torch.equal(official.mask_logits, own.mask_logits)
    # mask j gets token j: the single-mask token for mask 0, then the own tokens of masks 0 and 1
    assert torch.equal(official.mask_tokens[:, 1:], own.mask_tokens[:, :2])
    assert not torch.allclose(official.mask_tokens[:, 0], own.mask_tokens[:, 0])
    with pytest.raises(ValueError, match="pairing"):
        Sam2Tokens(tiny_sam2.model, pairing="j+1")


def test_clicks_outside_the_input_are_refused(tiny_sam2):
    with pytest.raises(ValueError, match="inside"):
        tiny_sam2(torch.rand(1, 3, 128, 128), torch.tensor([[[200.0, 5.0]]]))
    with pytest.raises(ValueError, match="one prompt per image"):
        tiny_sam2(torch.rand(2, 3, 128, 128), torch.tensor([[[20.0, 5.0]]]))


def test_official_heads_reproduce_the_mlps(tmp_path):
    names = ["iou_large", "task_gap", "iou_unsupervised"]
    states = {}
    for k, name in enumerate(names):
        (tmp_path / name).mkdir()
        states[name] = official_mlp_state(2 * D, k)
        torch.save(states[name], tmp_path / name / "model.pth")
    heads = load_official_heads(tmp_path, device="cpu")
    assert set(heads.names) == {OFFICIAL_HEADS[n] for n in names}
    x = torch.randn(5, 2 * D)
    out = heads(x)
    for name in names:
        s = states[name]
        h = torch.relu(x @ s["layers.0.weight"].T + s["layers.0.bias"])
        h = torch.relu(h @ s["layers.1.weight"].T + s["layers.1.bias"])
        ref = torch.sigmoid(h @ s["layers.2.weight"].T + s["layers.2.bias"])[:, 0]
        assert torch.allclose(out[:, heads.names.index(OFFICIAL_HEADS[name])], ref, atol=1e-6)
    decoded = heads.predict(x[:, :D], x[:, None, D:].expand(-1, 3, -1))
    assert "task_gap" in GAPS and torch.all(decoded["task_gap"] <= 0.5)


def test_missing_or_malformed_official_heads(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pth"):
        load_official_heads(tmp_path)
    (tmp_path / "task_gap").mkdir()
    torch.save({"w.weight": torch.zeros(3, 4), "w.bias": torch.zeros(3)}, tmp_path / "task_gap" / "model.pth")
    with pytest.raises(ValueError, match="not a USAM MLP"):
        load_official_heads(tmp_path)


def test_instances_of_one_image_encode_it_once_and_match_a_fresh_encoding(tiny_sam2):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    masks = [np.zeros((48, 64), dtype=bool) for _ in range(3)]
    for k, m in enumerate(masks):
        m[5 + 10 * k:15 + 10 * k, 10:40] = True
    clicks = [np.array([[20.0, 10.0 + 10 * k]]) for k in range(3)]
    calls = []
    hook = tiny_sam2.model.vision_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        shared = predict_sam2(tiny_sam2, [image] * 3, masks, clicks, progress=False)
        n_shared = len(calls)
        # copies are other images to the wrapper: each is encoded again
        fresh = predict_sam2(tiny_sam2, [image.copy() for _ in range(3)], masks, clicks,
                             progress=False)
    finally:
        hook.remove()
    assert n_shared == 1 and len(calls) == 4
    for a, b in zip(shared.__dict__.values(), fresh.__dict__.values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.equal(shared.ious[0], shared.ious[1])  # three instances, three answers
