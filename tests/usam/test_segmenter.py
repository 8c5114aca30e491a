"""The promptable segmenter: SAM's structure, tokens paired with masks, invariances, bad input."""

import pytest
import torch

from companion.usam.segmenter import NOT_A_POINT, SIZES, create_segmenter


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_segmenter("tiny", device="cpu").eval()


def _inputs(b=3, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, 32, 32, generator=g), torch.randint(0, 32, (b, k, 2), generator=g).float()


def test_outputs_and_shared_token_width(model):
    x, p = _inputs()
    out = model(x, p)
    assert out.mask_logits.shape == (3, 3, 32, 32) and out.scores.shape == (3, 3)
    assert out.iou_token.shape == (3, 32) and out.mask_tokens.shape == (3, 3, 32)
    assert ((out.scores >= 0) & (out.scores <= 1)).all()
    assert len({c.embed_dim for c in SIZES.values()}) == 1
    sizes = [sum(p.numel() for p in create_segmenter(s, device="cpu").parameters()) for s in SIZES]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] / 3


def test_mask_j_is_made_by_mask_token_j(model):
    seen = {}
    hook = model.mask_decoder.upscale.register_forward_hook(lambda m, i, o: seen.update(up=o))
    x, p = _inputs()
    try:
        out = model(x, p)
    finally:
        hook.remove()
    with torch.no_grad():
        for j in range(3):  # one hypernetwork, fed token j
            ref = torch.einsum("bc,bchw->bhw", model.mask_decoder.hypernet(out.mask_tokens[:, j]),
                               seen["up"])
            assert torch.allclose(ref, out.mask_logits[:, j], atol=1e-5)
        assert torch.allclose(model.mask_decoder.iou_head(out.iou_token).sigmoid(), out.scores)


def test_batch_independence_and_click_order(model):
    x, p = _inputs(b=4, k=3)
    with torch.no_grad():
        full = model(x, p)
        one = model(x[2:3], p[2:3])
        swapped = model(x, p[:, [2, 0, 1]])  # prompts are a set: order must not matter
    assert torch.allclose(full.mask_logits[2:3], one.mask_logits, atol=1e-4)
    assert torch.allclose(full.mask_logits, swapped.mask_logits, atol=1e-4)
    assert torch.allclose(full.iou_token, swapped.iou_token, atol=1e-5)


def test_embed_once_decode_many(model):
    x, p = _inputs()
    with torch.no_grad():
        emb = model.embed_image(x)
        assert torch.allclose(model.decode(emb, p).mask_logits, model(x, p).mask_logits)


def test_bad_input(model):
    x, p = _inputs()
    with pytest.raises(ValueError, match="outside"):
        model(x, p + 40)
    with pytest.raises(ValueError, match="prompts for 3 images"):
        model(x, p[:2])
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model(torch.rand(3, 3, 48, 48), p)
    with pytest.raises(ValueError, match="one per click"):
        model(x, p, torch.ones(3, 5))
    with pytest.raises(ValueError, match="not padding"):
        model(x, p, torch.full((3, 2), NOT_A_POINT))
    with pytest.raises(ValueError, match=r"\(B, K, 2\)"):
        model(x, p[..., 0])
    with pytest.raises(ValueError, match="Unknown segmenter size"):
        create_segmenter("huge")
    # padding clicks may lie anywhere: they are not clicks
    labels = torch.tensor([[1, NOT_A_POINT]] * 3)
    model(x, torch.cat([p[:, :1], torch.full((3, 1, 2), -5.0)], 1), labels)
