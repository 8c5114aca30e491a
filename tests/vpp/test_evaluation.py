"""VPP's evaluation: every clip model runs a clip and a timed frame through its own methods."""

import pytest
import torch

from companion.data.moving_shapes import make_moving_shapes
from companion.vpp.evaluation import ap_difference_interval, evaluate_clips
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
    full = evaluate_clips(models["vpp"], data, schedule=schedule, topk=True, progress=False)
    fewer = evaluate_clips(models["vpp"], data, schedule=schedule.scaled(0.5), topk=True,
                           progress=False)
    assert fewer.pkr < full.pkr - 0.1
    assert evaluate_clips(models["dense"], data, progress=False).pkr == 1.0
    with pytest.raises(TypeError):
        evaluate_clips(models["dense"], data, topk=True, progress=False)


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
