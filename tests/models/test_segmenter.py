"""The promptable segmenter: SAM's structure, tokens paired with masks, invariances, bad input."""

import pytest
import torch

from companion.models.segmenter import (NOT_A_POINT, SIZES, create_segmenter, mask_iou,
                                        segmentation_loss, training_prompts)


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
        for j, net in enumerate(model.mask_decoder.hypernets):
            ref = torch.einsum("bc,bchw->bhw", net(out.mask_tokens[:, j]), seen["up"])
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


def test_mask_iou_reference():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 8, 8)
    target = torch.rand(4, 1, 8, 8) > 0.5
    iou = mask_iou(logits, target)
    for b in range(4):
        for j in range(3):
            a, t = logits[b, j] > 0, target[b, 0]
            assert iou[b, j].item() == pytest.approx(((a & t).sum() / (a | t).sum()).item())
    assert mask_iou(-torch.ones(1, 4, 4), torch.zeros(1, 4, 4)).item() == 1.0


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
        loss, info = segmentation_loss(model, (images, masks, centre))
        first = info["best_iou"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert info["best_iou"] > first + 0.2
