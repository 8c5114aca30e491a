"""Tests of Video Patch Pruning: schedule, temporal mapping, selective modules, execution modes."""

import math

import pytest
import torch

from companion.data.moving_shapes import make_moving_shapes
from companion.vpp.modules import (
    Prior,
    SelectiveModule,
    TemporalMappingModule,
    distance_prior,
    straight_through_topk,
)
from companion.vpp.pruning import PrunedSegmenter, chain_loss
from companion.vpp.schedule import KeepRatioSchedule
from companion.vpp.segmenter import VideoSegmenter, VideoSegmenterConfig

CONFIG = VideoSegmenterConfig(image_size=48, patch_size=8, dim=32, depth=12, heads=2, num_queries=4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return PrunedSegmenter(VideoSegmenter(CONFIG), KeepRatioSchedule.paper(0.55)).eval()


def test_paper_schedules_and_their_patch_keep_ratio():
    s = KeepRatioSchedule.paper(0.55)
    assert s.per_block() == pytest.approx((1, .7, .7, .56, .56, .56, .448, .448, .448, .3584, .3584, .3584))
    assert s.pkr == pytest.approx((1 + 2 * 0.7 + 3 * (0.56 + 0.448 + 0.3584)) / 12)
    assert KeepRatioSchedule.paper(0.4).sm_ratios == pytest.approx((0.42, 0.294, 0.2058))
    assert KeepRatioSchedule.paper(0.4).pkr == pytest.approx(0.4133, abs=1e-3)
    # Without a prior (first frame) Map-SM is off and blocks stay dense until the first SM.
    assert s.per_block(has_prior=False)[:3] == (1.0, 1.0, 1.0)


def test_later_only_schedule_matches_the_target_keep_ratio():
    s = KeepRatioSchedule.later_only(0.5416)
    assert s.map_block is None and s.per_block()[:3] == (1.0, 1.0, 1.0)
    assert s.pkr == pytest.approx(0.5416)


@pytest.mark.parametrize("kwargs", [{"map_ratio": 0.0}, {"map_ratio": 1.2},
                                    {"sm_ratios": (0.5, 0.6, 0.3)}, {"sm_blocks": (3, 6)},
                                    {"sm_blocks": (0, 6, 9)}, {"prior_block": 0}])
def test_bad_schedules_raise(kwargs):
    with pytest.raises(ValueError):
        KeepRatioSchedule(**kwargs)


def test_distance_prior_values():
    phi = distance_prior(4)
    assert torch.allclose(phi.diagonal(), torch.ones(16))        # log10(10) at zero distance
    assert phi[0, 15] == pytest.approx(math.log10(1e-6), abs=1e-3)  # opposite corners: ‖·‖₁ = 2
    assert phi[0, 1] == pytest.approx(math.log10(10 * (2 - 1 / 3) / 2 + 1e-6), rel=1e-5)


def _prior_from(early, deep, keep):
    return Prior(early, deep, keep)


def test_mapping_copies_deep_features_from_the_matching_previous_patch():
    grid, dim = 4, 16
    mapper = TemporalMappingModule(dim, grid).eval()
    torch.manual_seed(0)
    # Strongly distinct early tokens; frame t is frame t-1 shifted right by one patch.
    prev = 20 * torch.nn.functional.normalize(torch.randn(1, 16, dim), dim=-1)
    cur = prev.reshape(1, grid, grid, dim).roll(1, dims=2).reshape(1, 16, dim)
    deep = torch.randn(1, 16, dim)
    out = mapper(cur, _prior_from(prev, deep, torch.ones(1, 16)), keep_ratio=0.5)
    expected = torch.arange(16).reshape(grid, grid).roll(1, dims=1).reshape(16)
    assert torch.equal(out.source[0], expected)
    assert torch.allclose(out.mapped, deep[:, expected])
    assert int(out.keep.sum()) == 8


def test_mapping_only_uses_sources_kept_in_the_previous_deep_layer():
    mapper = TemporalMappingModule(8, 3).train()
    torch.manual_seed(1)
    x = torch.randn(2, 9, 8)
    keep = torch.zeros(2, 9)
    keep[:, [2, 5]] = 1
    out = mapper(x, _prior_from(torch.randn(2, 9, 8), torch.randn(2, 9, 8), keep), keep_ratio=0.3)
    assert set(out.source.unique().tolist()) <= {2, 5}


def test_one_frame_at_evaluation_associates_as_a_batch_does():
    """A single frame scores only its kept sources; a batch masks the others out: same choice."""
    mapper = TemporalMappingModule(8, 4).eval()
    g = torch.Generator().manual_seed(2)
    x, early, deep = (torch.randn(3, 16, 8, generator=g) for _ in range(3))
    keep = (torch.rand(3, 16, generator=g) < 0.5).float()
    keep[2] = 0  # a frame that kept nothing: every token is a source
    source, mapped = mapper.associate(x, _prior_from(early, deep, keep))
    for b in range(3):
        one = _prior_from(early[b:b + 1], deep[b:b + 1], keep[b:b + 1])
        alone, copied = mapper.associate(x[b:b + 1], one)
        assert torch.equal(alone, source[b:b + 1]) and torch.equal(copied, mapped[b:b + 1])
        if keep[b].any():
            assert keep[b, alone[0]].all()


def test_mapping_scores_at_evaluation_are_the_smoothed_softmax_of_training():
    """Evaluation's sigmoid of the smoothed logit margin against the training formula without
    noise: the softmax of the smoothed log-softmax, and the top-K of those scores kept."""
    torch.manual_seed(2)
    mapper = TemporalMappingModule(8, 4).eval()
    x = torch.randn(1, 16, 8)
    out = mapper(x, _prior_from(torch.randn(1, 16, 8), torch.randn(1, 16, 8), torch.ones(1, 16)),
                 keep_ratio=0.5)
    f = torch.nn.functional.log_softmax(mapper.mlp(mapper.norm(out.mapped)), dim=-1)
    f = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(
        f.transpose(1, 2).reshape(1, 2, 4, 4), (1,) * 4, mode="replicate"), 3, stride=1)
    want = f.reshape(1, 2, 16).transpose(1, 2).softmax(-1)[..., 0]
    assert torch.allclose(out.scores, want, atol=1e-6)
    assert torch.equal(out.keep[0].nonzero().flatten(), want[0].topk(8).indices.sort().values)


def test_straight_through_topk_is_hard_forward_and_soft_backward():
    s = torch.tensor([[0.1, 0.9, 0.5, 0.7]], requires_grad=True)
    m = straight_through_topk(s, 2)
    assert m.tolist() == [[0.0, 1.0, 0.0, 1.0]]
    g = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    (m * g).sum().backward()
    assert torch.equal(s.grad, g)


def test_straight_through_topk_chooses_among_the_kept_by_the_given_rank():
    s = torch.tensor([[0.9, 0.8, 0.7, 0.6]], requires_grad=True)
    among = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    rank = torch.tensor([[5.0, 1.0, 3.0, 2.0]])
    assert straight_through_topk(s, 2, among).tolist() == [[0.0, 1.0, 1.0, 0.0]]
    assert straight_through_topk(s, 2, among, rank).tolist() == [[0.0, 0.0, 1.0, 1.0]]
    with torch.no_grad():  # no gradient to carry: exact zeros and ones
        hard = straight_through_topk(s, 1)
    assert torch.equal(hard, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))


def test_selective_module_ranks_in_the_order_of_its_scores():
    torch.manual_seed(0)
    sm = SelectiveModule(16).eval()
    x = torch.randn(1, 30, 16)
    s, rank = sm(x)
    assert ((s > 0) & (s < 1)).all()
    order = rank.argsort(descending=True)
    assert (s[0, order[0]][1:] <= s[0, order[0]][:-1]).all()
    sm.train()
    s, rank = sm(x)
    assert rank is s  # in training the noisy scores themselves


def _clip(n_frames=3):
    return make_moving_shapes(n_videos=1, n_frames=n_frames, image_size=48, seed=5).clip(0)["frames"]


@pytest.mark.parametrize("schedule", [KeepRatioSchedule.paper(0.55), KeepRatioSchedule.paper(0.4),
                                      KeepRatioSchedule.later_only(0.55)])
def test_masked_and_gather_modes_agree(schedule):
    torch.manual_seed(0)
    model = PrunedSegmenter(VideoSegmenter(CONFIG), schedule).eval()
    frames = _clip(4)
    masked = model.predict_clip(frames, mode="masked")
    gather = model.predict_clip(frames, mode="gather")
    for a, b in zip(masked, gather, strict=True):
        assert torch.equal(a.keep, b.keep)
        assert torch.allclose(a.prior.deep, b.prior.deep, atol=1e-4)
        assert torch.allclose(a.outputs["masks"], b.outputs["masks"], atol=1e-4)
        assert torch.allclose(a.outputs["logits"], b.outputs["logits"], atol=1e-4)


def test_keeping_everything_is_the_dense_model(model):
    keep_all = KeepRatioSchedule(map_ratio=1.0, sm_ratios=(1.0, 1.0, 1.0))
    frames = _clip()
    dense = [model.segmenter(frames[t:t + 1]) for t in range(len(frames))]
    for mode in ("masked", "gather"):
        for res, ref in zip(model.predict_clip(frames, mode, keep_all), dense, strict=True):
            assert res.keep.all()
            assert torch.allclose(res.outputs["masks"], ref["masks"], atol=1e-4)


def test_keep_masks_are_monotone_and_every_module_keeps_its_budget(model):
    results = model.predict_clip(_clip())
    first, later = results[0].keep[0], results[1].keep[0]
    assert (first[1:] <= first[:-1]).all() and (later[1:] <= later[:-1]).all()
    assert first[:3].all()                                  # no prior: blocks 0-2 dense
    n = CONFIG.num_tokens
    expected = [math.floor(r * n + 1e-6) / n for r in model.schedule.per_block()]
    assert later.mean(1).tolist() == pytest.approx(expected)


def test_pruned_tokens_pass_unchanged_and_gather_does_fewer_flops(model):
    from companion.metrics.efficiency import count_flops
    frames = _clip(2)
    prior = model.forward_frame(frames[:1], None, "gather").prior
    dense = count_flops(lambda: model.segmenter(frames[1:]))
    sparse = count_flops(lambda: model.forward_frame(frames[1:], prior, "gather"))
    assert sparse < 0.8 * dense


def test_sparse_loss_formula(model):
    model.train()
    try:
        frames = _clip(2)
        first = model.forward_frame(frames[:1])
        second = model.forward_frame(frames[1:], first.prior)
    finally:
        model.eval()
    sm = [second.ratio_losses[f"block{b}"] for b in (3, 6, 9)]
    assert float(model.sparse_loss(second).detach()) == pytest.approx(
        float((40 * (10 * second.ratio_losses["map"] + sum(sm)) / 13).detach()), rel=1e-6)
    assert "map" not in first.ratio_losses
    assert float(model.sparse_loss(first).detach()) == pytest.approx(
        float((40 * sum(first.ratio_losses.values()) / 3).detach()), rel=1e-6)
    n = CONFIG.num_tokens
    for b in (3, 6, 9):  # the hard budget holds in training too; L_l pulls the soft scores to ρ_l
        ratio = model.schedule.sm_ratios[(3, 6, 9).index(b)]
        assert (second.keep[:, b].detach() > 0.5).sum(1).tolist() == [math.floor(ratio * n + 1e-6)]
        assert 0 <= float(second.ratio_losses[f"block{b}"].detach()) <= max(ratio, 1 - ratio) ** 2


def test_gradients_reach_the_selection_modules(model):
    model.train()
    try:
        data = make_moving_shapes(n_videos=2, n_frames=3, image_size=48)
        batch = torch.utils.data.default_collate([data.chains(length=3, frame_range=1)[i] for i in range(2)])
        model.zero_grad()
        loss, logs = chain_loss(model, batch)
        loss.backward()
    finally:
        model.eval()
    assert model.mapper.mlp.fc1.weight.grad.abs().sum() > 0
    assert all(sel.mlp.fc1.weight.grad.abs().sum() > 0 for sel in model.selectors.values())
    assert 0 < logs["pkr"] <= 1


def test_bad_input_is_a_clear_error(model):
    frames = _clip(2)
    with pytest.raises(ValueError, match="batch 1"):
        model.forward_frame(torch.cat([frames, frames]), mode="gather")
    with pytest.raises(ValueError, match="mode"):
        model.forward_frame(frames[:1], mode="fast")
    other = PrunedSegmenter(VideoSegmenter(VideoSegmenterConfig(image_size=32, patch_size=8, dim=32,
                                                           heads=2, num_queries=4))).eval()
    prior = model.forward_frame(frames[:1]).prior
    with pytest.raises(ValueError, match="same size"):
        other.forward_frame(torch.rand(1, 3, 32, 32), prior)
    with pytest.raises(ValueError, match="L >= 2"):
        chain_loss(model, {"frames": frames[None, :1], "masks": None, "labels": None})
    with pytest.raises(ValueError, match="depth"):
        PrunedSegmenter(VideoSegmenter(CONFIG), KeepRatioSchedule(depth=6, sm_blocks=(3,),
                                                                  sm_ratios=(0.5,)))


def test_single_frame_clip_runs_dense_early_layers(model):
    (result,) = model.predict_clip(_clip(1))
    assert result.mapping is None and result.keep[0, :3].all()


def test_a_selector_that_wants_to_drop_everything_still_keeps_its_budget():
    torch.manual_seed(0)
    model = PrunedSegmenter(VideoSegmenter(CONFIG), KeepRatioSchedule.paper(0.55)).eval()
    with torch.no_grad():
        model.selectors["3"].mlp.fc2.bias.copy_(torch.tensor([-100.0, 100.0]))
    frames = _clip(3)
    masked = model.predict_clip(frames, mode="masked")
    gather = model.predict_clip(frames, mode="gather")
    budget = math.floor(0.56 * CONFIG.num_tokens + 1e-6)
    for a, b in zip(masked, gather, strict=True):
        assert a.keep[0, 3].sum() == budget and torch.equal(a.keep, b.keep)
        assert torch.isfinite(a.outputs["masks"]).all()
        assert torch.allclose(a.outputs["masks"], b.outputs["masks"], atol=1e-4)


def test_clips_without_objects_train_and_predict():
    torch.manual_seed(0)
    model = PrunedSegmenter(VideoSegmenter(CONFIG), KeepRatioSchedule.paper(0.4)).train()
    data = make_moving_shapes(n_videos=2, n_frames=3, image_size=48, objects=(0, 0))
    batch = torch.utils.data.default_collate([data.chains(length=3, frame_range=1)[i] for i in range(2)])
    loss, _ = chain_loss(model, batch)
    assert torch.isfinite(loss)
    model.eval()
    assert len(model.predict_clip(data.clip(0)["frames"])) == 3


def test_objectness_loss_is_the_cross_entropy_to_the_object_patches():
    from companion.vpp.pruning import FrameResult, objectness_loss
    masks = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    masks[0, 0, :8, :8] = True                      # patch 0 of a 2 x 2 grid of 8-pixel patches
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    everything = torch.ones(1, 4)

    def result(scores):
        return FrameResult({}, torch.ones(1, 12, 4), None, scores=scores)

    assert float(objectness_loss(result({3: (target, everything)}), masks, 8)) < 1e-5
    half = objectness_loss(result({3: (torch.full((1, 4), 0.5), everything)}), masks, 8)
    assert float(half) == pytest.approx(math.log(2), rel=1e-5)
    # only the tokens a module chooses among count; the mean runs over modules
    wrong = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    among = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    two = result({1: (wrong, among), 3: (torch.full((1, 4), 0.5), everything)})
    assert float(objectness_loss(two, masks, 8)) == pytest.approx(math.log(2) / 2, rel=1e-4)
    assert float(objectness_loss(result({}), masks, 8)) == 0.0
