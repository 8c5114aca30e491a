"""VPP's evaluation: every clip model runs a clip and a timed frame through its own methods."""

import pytest
import torch

from companion.data.moving_shapes import make_moving_shapes
from companion.vpp.evaluation import (
    ClipRuns,
    ap_difference_interval,
    evaluate_clips,
    object_patches,
    run_clips,
    selectivity,
)
from companion.vpp.pruning import PrunedSegmenter
from companion.vpp.schedule import KeepRatioSchedule
from companion.vpp.segmenter import VideoSegmenter, VideoSegmenterConfig
from companion.vpp.token_merging import TokenMergingSegmenter

CONFIG = VideoSegmenterConfig(image_size=32, patch_size=8, dim=32, depth=12, heads=2, num_queries=4)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    dense = VideoSegmenter(CONFIG).eval()
    return {"dense": dense, "vpp": PrunedSegmenter(dense, KeepRatioSchedule.paper(0.55)).eval(),
            "tome": TokenMergingSegmenter(dense, 1).eval()}


def test_run_clip_reports_the_tokens_each_model_kept(models):
    frames = torch.rand(3, 3, 32, 32)
    n = CONFIG.num_tokens
    keeps = {}
    for name, model in models.items():
        outputs, keep = model.run_clip(frames)
        assert len(outputs) == 3 and keep.shape == (3, CONFIG.depth, n)
        assert outputs[0]["masks"].shape == (1, CONFIG.num_queries, 8, 8)
        keeps[name] = keep
    assert (keeps["dense"] == 1).all()
    assert (keeps["vpp"][0, :3] == 1).all() and keeps["vpp"][1:].mean() < 0.8  # prior from frame 2
    # ToMe: block l sees N − r·l tokens (r = 1), on every frame alike
    expected = (n - torch.arange(CONFIG.depth)).float() / n
    assert torch.allclose(keeps["tome"][:, :, 0], expected.expand(3, -1))


def test_frame_call_measures_the_frame_and_only_pruning_uses_the_previous_one(models):
    previous, frame = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    for name, model in models.items():
        call = model.frame_call(previous, frame)
        again = model.frame_call(torch.zeros_like(previous), frame)
        with torch.no_grad():
            same = torch.allclose(call()["masks"], again()["masks"])
        assert same == (name != "vpp"), name
    with torch.no_grad():
        dense_out = models["dense"].frame_call(previous, frame)()["masks"]
        assert torch.allclose(dense_out, models["dense"](frame)["masks"], atol=1e-5)


def test_evaluate_clips_passes_pruning_options_only_to_pruned_models(models):
    data = make_moving_shapes(n_videos=2, n_frames=3, image_size=32, seed=0)
    schedule = models["vpp"].schedule
    full = evaluate_clips(models["vpp"], data, schedule=schedule, progress=False)
    fewer = evaluate_clips(models["vpp"], data, schedule=schedule.scaled(0.5), progress=False)
    assert fewer.pkr < full.pkr - 0.1
    assert evaluate_clips(models["dense"], data, progress=False).pkr == 1.0
    with pytest.raises(TypeError):
        evaluate_clips(models["dense"], data, schedule=schedule, progress=False)


def test_ap_difference_interval_of_a_model_with_itself_is_zero(models):
    data = make_moving_shapes(n_videos=3, n_frames=3, image_size=32, seed=0)
    ev = evaluate_clips(models["dense"], data, class_agnostic=True, progress=False)
    assert ev.clip_of_frame.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    same = ap_difference_interval(ev, ev, n_boot=20)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    alone = ap_difference_interval(ev, n_boot=20)
    assert alone.estimate == pytest.approx(ev.frame_ap.ap)
    assert alone.low <= ev.frame_ap.ap <= alone.high
    video = ap_difference_interval(ev, video=True, n_boot=20)
    assert video.estimate == pytest.approx(ev.video_ap.ap)
    other = evaluate_clips(models["dense"], make_moving_shapes(n_videos=2, n_frames=3,
                                                               image_size=32, seed=0),
                           class_agnostic=True, progress=False)
    with pytest.raises(ValueError, match="different clips"):
        ap_difference_interval(ev, other)


@pytest.mark.parametrize("name, options", [("dense", {}), ("vpp", {}),
                                           ("vpp", {"schedule": KeepRatioSchedule.paper(0.4)}),
                                           ("tome", {})])
def test_clips_side_by_side_give_what_each_clip_alone_gives(models, name, options):
    """run_batch (frames of every clip in one batch; the pruned model's blocks masked) against
    run_clip per clip (batch 1, kept tokens gathered): the same outputs and kept tokens.

    The two paths round differently (other kernels for other batch shapes), and with random
    weights a top-k choice can sit on a near-tie: a frame whose kept tokens differ (at most a few
    per clip) is not compared further, and so are the frames after it, which it steers.
    """
    model = models[name]
    videos = torch.rand(3, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    outputs, keeps = model.run_batch(videos, **options)
    assert len(outputs) == 3 and keeps.shape == (3, 4, CONFIG.depth, CONFIG.num_tokens)
    compared = 0
    for b in range(3):
        alone, keep = model.run_clip(videos[b], **options)
        assert (keeps[b] != keep).double().mean() < 0.05
        same = (keeps[b] == keep).flatten(1).all(dim=1).cumprod(dim=0).bool()
        compared += int(same.sum())
        for got, want in zip([o for o, ok in zip(outputs[b], same, strict=True) if ok],
                             [o for o, ok in zip(alone, same, strict=True) if ok], strict=True):
            assert got["masks"].shape == want["masks"].shape == (1, CONFIG.num_queries, 8, 8)
            assert torch.allclose(got["masks"], want["masks"], atol=1e-4)
            assert torch.allclose(got["logits"], want["logits"], atol=1e-4)
    assert compared >= 8  # of 12 frames (a near-tie in one clip's second frame leaves 9)
    if name != "dense":  # pruning and merging really happened: fewer tokens after the first
        assert keeps[:, 1:, -1].mean() < 0.8


def test_evaluating_runs_scores_them_as_evaluating_the_model(models):
    data = make_moving_shapes(n_videos=3, n_frames=3, image_size=32, seed=0)
    for name in ("dense", "vpp"):
        runs = run_clips(models[name], data, progress=False)
        assert len(runs.outputs) == len(runs.keeps) == 3
        one_by_one = run_clips(models[name], data, batch_size=1, progress=False)
        # the same kept tokens up to rounding (a random model's Map-SM scores tie where patches
        # copied the same source; batched and single runs may break a tie differently)
        same = torch.cat([(a == b).flatten() for a, b in zip(runs.keeps, one_by_one.keeps, strict=True)])
        assert same.float().mean() > 0.97
    for agnostic in (False, True):
        scored = evaluate_clips(runs, data, class_agnostic=agnostic)
        direct = evaluate_clips(models["vpp"], data, class_agnostic=agnostic, progress=False)
        assert scored.frame_ap.ap == pytest.approx(direct.frame_ap.ap)
        assert scored.video_ap.ap == pytest.approx(direct.video_ap.ap)
        assert torch.equal(scored.keep_per_layer, direct.keep_per_layer)
    with pytest.raises(ValueError, match="run options"):
        evaluate_clips(runs, data, mode="masked")
    with pytest.raises(ValueError, match="cover 3 clips but the data has 2"):
        evaluate_clips(runs, make_moving_shapes(n_videos=2, n_frames=3, image_size=32, seed=0))


def test_object_patches_are_those_at_least_a_quarter_covered():
    masks = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    masks[0, 0, :2, :1] = True    # 2 of patch 0's 16 pixels
    masks[0, 1, :2, :2] = True    # with the other instance: 4 of 16, a quarter
    masks[0, 0, 4:, 4:] = True    # all of patch 3
    assert object_patches(masks, 4).tolist() == [[True, False, False, True]]
    assert object_patches(masks[:, :1], 4).tolist() == [[False, False, False, True]]


def test_selectivity_counts_kept_object_patches_after_each_module():
    data = make_moving_shapes(n_videos=3, n_frames=3, image_size=32, seed=0)
    schedule = KeepRatioSchedule.paper(0.55)
    obj = [object_patches(data.clip(v)["masks"], 8) for v in range(3)]
    # keep exactly the object patches from Map-SM on, everything in the first frame
    keeps = []
    for o in obj:
        keep = o[:, None, :].float().expand(-1, CONFIG.depth, -1).clone()
        keep[:, 0], keep[0] = 1.0, 1.0
        keeps.append(keep)
    result = selectivity(ClipRuns([[]] * 3, keeps), data, schedule, 8, n_boot=50)
    assert [m.block for m in result.modules] == [1, 3, 6, 9]
    share = float(torch.cat([o[1:] for o in obj]).float().mean())
    for m in result.modules:
        assert m.kept == pytest.approx(share)
        assert m.object_kept.estimate == pytest.approx(1.0) and m.object_kept.low == pytest.approx(1.0)
        assert m.selective
    assert result.weakest.estimate == pytest.approx(1 - share)
    assert "selective" in result._repr_html_()
    # keeping everything is not selective: the object share equals the kept share
    flat = selectivity(ClipRuns([[]] * 3, [torch.ones_like(k) for k in keeps]), data, schedule, 8,
                       n_boot=50)
    assert not any(m.selective for m in flat.modules) and flat.weakest.estimate == pytest.approx(0)
    with pytest.raises(ValueError, match="cover 2 clips but the data has 3"):
        selectivity(ClipRuns([[]] * 2, keeps[:2]), data, schedule, 8)


def test_side_by_side_times_every_model_against_the_first(models):
    from companion.vpp.benchmark import side_by_side
    previous, frame = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    result = side_by_side({"dense": models["dense"], "VPP": models["vpp"]}, previous, frame,
                          repeats=4, n_boot=20)
    assert list(result.timing) == ["dense", "VPP"] and result.timing["VPP"].repeats == 4
    assert result.speedup["dense"].estimate == 1.0
    assert result.flops["VPP"] < 0.8 * result.flops["dense"]
    assert "speed-up [95 %]" in result._repr_html_() and "VPP" in repr(result)
    with pytest.raises(ValueError, match="at least two models"):
        side_by_side({"dense": models["dense"]}, previous, frame)
