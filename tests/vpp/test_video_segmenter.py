"""Tests of the small ViT video segmenter: masked blocks, Hungarian matching, tracker, timm weights."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.data.moving_shapes import make_moving_shapes
from companion.metrics.efficiency import count_flops
from companion.vpp.matching import _pairwise_mask_costs, frame_targets, hungarian_match, matching_loss
from companion.vpp.postprocess import FramePrediction, postprocess
from companion.vpp.segmenter import VideoSegmenter, VideoSegmenterConfig
from companion.vpp.timm_port import from_timm
from companion.vpp.tracker import track
from companion.vpp.vit import Block

SMALL = VideoSegmenterConfig(image_size=32, patch_size=8, dim=32, depth=2, heads=2, num_queries=4)


def test_key_mask_equals_running_the_block_on_the_kept_tokens_only():
    torch.manual_seed(0)
    block = Block(32, 4).eval()
    x = torch.randn(2, 20, 32)
    keep = torch.rand(2, 20) > 0.4
    out = block(x, key_mask=keep)
    for b in range(2):
        ref = block(x[b:b + 1, keep[b]])
        assert torch.allclose(out[b, keep[b]], ref[0], atol=1e-5)


@pytest.mark.parametrize("tokens", [1, 7, 20])
def test_the_fused_inference_block_is_the_block_and_counts_the_same_flops(tokens):
    torch.manual_seed(0)
    block = Block(32, 4).eval()
    for p in block.parameters():  # away from the initial biases of 0 and norms of 1
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, tokens, 32)
    with torch.no_grad():
        fused, steps = block(x), block.feed_forward(block.attend(x))
    assert torch.allclose(fused, steps, atol=1e-5)
    assert count_flops(lambda: block(x)) == count_flops(lambda: block.feed_forward(block.attend(x)))
    x.requires_grad_(True)
    block(x).sum().backward()  # with a gradient to carry: the differentiable path
    assert x.grad is not None and block.attn.qkv.weight.grad is not None


@pytest.mark.parametrize("patch", [8, 6, 16])
def test_the_head_matrix_products_are_its_convolutions(patch):
    torch.manual_seed(0)
    model = VideoSegmenter(VideoSegmenterConfig(image_size=48, patch_size=patch, dim=32)).eval()
    c = model.config
    images, memory = torch.rand(2, 3, 48, 48), torch.randn(2, c.num_tokens, 32)
    grid = memory.transpose(1, 2).reshape(2, 32, c.grid, c.grid)
    with torch.no_grad():
        assert torch.allclose(model.pixel_map(images), model.stem(images), atol=1e-5)
        assert torch.allclose(model.upsampled(memory), model.upsample(grid), atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(q=st.integers(1, 5), g=st.integers(0, 4), seed=st.integers(0, 10_000))
def test_hungarian_match_is_optimal_against_exhaustive_search(q, g, seed):
    g = min(g, q)
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(q, 4, generator=gen)
    masks = torch.randn(q, 16, generator=gen)
    labels = torch.randint(0, 3, (g,), generator=gen)
    target = (torch.rand(g, 16, generator=gen) > 0.5).float()
    rows, cols = hungarian_match(logits, masks, labels, target)
    assert len(rows) == g and len(set(rows.tolist())) == g
    bce, dice = _pairwise_mask_costs(masks, target)
    cost = -2 * logits.softmax(-1)[:, labels] + 5 * bce + 5 * dice
    found = float(cost[rows, cols].sum()) if g else 0.0
    best = min((float(sum(cost[p[j], j] for j in range(g))) for p in itertools.permutations(range(q), g)),
               default=0.0)
    assert found == pytest.approx(best, abs=1e-4)


def test_pairwise_costs_match_elementwise_losses():
    torch.manual_seed(1)
    pred, target = torch.randn(3, 10), (torch.rand(2, 10) > 0.5).float()
    bce, dice = _pairwise_mask_costs(pred, target)
    for i, j in itertools.product(range(3), range(2)):
        ref = torch.nn.functional.binary_cross_entropy_with_logits(pred[i], target[j])
        p = pred[i].sigmoid()
        ref_dice = 1 - (2 * (p * target[j]).sum() + 1) / (p.sum() + target[j].sum() + 1)
        assert bce[i, j] == pytest.approx(float(ref), rel=1e-5)
        assert dice[i, j] == pytest.approx(float(ref_dice), rel=1e-5)


def test_frame_targets_drop_empty_slots_and_invisible_objects():
    masks = torch.zeros(1, 3, 8, 8, dtype=torch.bool)
    masks[0, 0, :4, :4] = True       # visible object
    masks[0, 2, 4:, 4:] = True       # slot marked unused
    labels = torch.tensor([[2, 1, -1]])  # slot 1 in use but not visible in this frame
    (lab, m), = frame_targets(masks, labels, 4)
    assert lab.tolist() == [2]
    assert m.shape == (1, 16) and m.sum() == 4


def test_loss_prefers_the_right_answer_and_learns():
    torch.manual_seed(0)
    data = make_moving_shapes(n_videos=2, n_frames=2, image_size=32, objects=(1, 2))
    batch = torch.utils.data.default_collate([data.frames()[i] for i in range(4)])
    model = VideoSegmenter(SMALL)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, _ = matching_loss(model(batch["image"]), batch["masks"], batch["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_wrong_frame_size_is_a_clear_error():
    model = VideoSegmenter(SMALL)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model(torch.rand(1, 3, 40, 40))
    with pytest.raises(ValueError, match="multiple"):
        VideoSegmenter(VideoSegmenterConfig(image_size=30, patch_size=8))


def test_postprocess_keeps_confident_queries_in_score_order():
    logits = torch.full((1, 3, 3), -10.0)
    logits[0, 0, 1], logits[0, 1, 0], logits[0, 2, 2] = 10.0, 5.0, 10.0  # query 2 = no object
    masks = torch.full((1, 3, 4, 4), -10.0)
    masks[0, 0, :2], masks[0, 1, 2:] = 10.0, 10.0
    (pred,) = postprocess({"logits": logits, "masks": masks}, 8)
    assert pred.labels.tolist() == [1, 0] and pred.masks.shape == (2, 8, 8)
    assert pred.masks[0, :4].all() and not pred.masks[0, 4:].any()


def test_tracker_recovers_identities_from_shuffled_detections():
    data = make_moving_shapes(n_videos=1, n_frames=6, image_size=48, objects=(3, 3), seed=2)
    masks, labels = data.masks[0][:, :3], data.labels[0][:3]
    gen = torch.Generator().manual_seed(0)
    frames = []
    for t in range(6):
        visible = torch.nonzero(masks[t].flatten(1).any(1)).squeeze(1)
        order = visible[torch.randperm(len(visible), generator=gen)]
        frames.append(FramePrediction(masks[t][order], torch.ones(len(order)), labels[order]))
    video = track(frames)
    # Every ground-truth object appears as exactly one track holding its masks in every frame.
    for k in range(3):
        if not masks[:, k].any():
            continue
        hits = [j for j in range(video.masks.shape[1])
                if all(torch.equal(video.masks[t, j], masks[t, k]) for t in range(6) if masks[t, k].any())]
        assert len(hits) == 1
        assert video.labels[hits[0]] == labels[k]


def test_tracker_rejects_mixed_frame_sizes():
    label = torch.zeros(1, dtype=torch.long)
    a = FramePrediction(torch.ones(1, 8, 8, dtype=torch.bool), torch.ones(1), label)
    b = FramePrediction(torch.ones(1, 6, 6, dtype=torch.bool), torch.ones(1), label)
    with pytest.raises(ValueError, match="same|must match"):
        track([a, b])


def test_timm_weights_give_the_same_blocks():
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                            init_values=0.5, num_classes=0).eval()
    with torch.no_grad():
        for b in vit.blocks:
            b.ls1.gamma.normal_()
            b.ls2.gamma.normal_()
    seg = from_timm(vit, image_size=32, num_classes=3).eval()
    x = torch.rand(2, 3, 32, 32)
    # a model without a pretrained config gets ImageNet's statistics, as timm resolves them
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        ref = vit.patch_embed((x - mean) / std) + vit.pos_embed[:, vit.num_prefix_tokens:]
        assert torch.allclose(seg.embed(x), ref, atol=1e-5)
        for mine, theirs in zip(seg.blocks, vit.blocks, strict=True):
            assert torch.allclose(mine(ref), theirs(ref), atol=1e-5)
            ref = theirs(ref)


def test_frames_are_normalised_as_the_pretrained_config_says():
    """[0, 1] frames reach the backbone with the mean and std of the model's own pretrained cfg."""
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                            num_classes=0).eval()
    vit.pretrained_cfg = {"mean": (0.5, 0.25, 0.0), "std": (0.5, 0.5, 2.0)}
    seg = from_timm(vit, image_size=32, num_classes=1).eval()
    assert seg.config.pixel_mean == (0.5, 0.25, 0.0) and seg.config.pixel_std == (0.5, 0.5, 2.0)
    x = torch.rand(1, 3, 32, 32)
    normalised = (x - torch.tensor([0.5, 0.25, 0.0])[:, None, None]) / \
        torch.tensor([0.5, 0.5, 2.0])[:, None, None]
    with torch.no_grad():
        ref = vit.patch_embed(normalised) + vit.pos_embed[:, vit.num_prefix_tokens:]
        assert torch.allclose(seg.embed(x), ref, atol=1e-5)
    # a model trained here from scratch sees the frames unchanged (and its checkpoint keys too)
    plain = VideoSegmenter(SMALL)
    assert "pixel_mean" not in plain.state_dict()
    with torch.no_grad():
        assert torch.allclose(plain.embed(x), plain.patch_embed(x).flatten(2).transpose(1, 2)
                              + plain.pos_embed, atol=1e-6)
