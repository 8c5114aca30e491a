"""USAM: token pairing, targets, fused heads against plain MLPs, training, baselines, costs."""

import numpy as np
import pytest
import torch
from torch import nn

from companion.data.ambiguous_shapes import make_ambiguous_shapes
from companion.data.prompts import Prompts, sample_prompts
from companion.metrics.segmentation import mask_iou
from companion.usam.baselines import AUGMENTATIONS, entropy_baselines
from companion.usam.costs import method_costs
from companion.usam.heads import USAMHeads, train_heads
from companion.usam.records import Predictions, USAMRecords, collect_records, encode_targets, pair_tokens
from companion.usam.segmenter import create_segmenter

D = 32


def _predictions(ious, scores, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(ious)
    return Predictions(torch.tensor(scores), torch.tensor(ious),
                            torch.randn(n, D, generator=g), torch.randn(n, 3, D, generator=g))


def test_pair_tokens_pairs_each_mask_with_its_own_token():
    iou, masks = torch.randn(2, D), torch.randn(2, 3, D)
    pairs = pair_tokens(iou, masks)
    assert pairs.shape == (2, 3, 2 * D)
    for j in range(3):
        assert torch.equal(pairs[:, j, :D], iou) and torch.equal(pairs[:, j, D:], masks[:, j])
    with pytest.raises(ValueError, match="expected iou_token"):
        pair_tokens(iou, masks[:1])


def test_targets_follow_the_definitions():
    tiny = _predictions([[0.2, 0.6, 0.4], [0.9, 0.1, 0.3]], [[0.9, 0.1, 0.2], [0.1, 0.8, 0.3]])
    large = _predictions([[0.7, 0.5, 0.1], [0.95, 0.2, 0.1]], [[0.1, 0.9, 0.2], [0.9, 0.1, 0.3]])
    dense = _predictions([[0.8, 0.6, 0.4], [0.5, 0.1, 0.3]], [[0.1, 0.9, 0.2], [0.1, 0.8, 0.3]])
    rec = USAMRecords(("tiny", "large"), {"tiny": tiny, "large": large},
                           {"tiny": dense, "large": large})
    t = rec.targets("tiny")
    assert torch.allclose(t["iou_tiny"], torch.tensor([0.6, 0.9]))
    assert torch.allclose(t["iou_large"], torch.tensor([0.7, 0.95]))
    assert torch.allclose(t["iou_sam"], torch.tensor([0.2, 0.1]))  # the score's choice
    assert torch.allclose(t["iou_dense"], torch.tensor([0.8, 0.5]))
    assert torch.allclose(t["model_gap"], torch.tensor([0.1, 0.05]))
    assert torch.allclose(t["prompt_gap"], torch.tensor([0.2, -0.4]))
    assert torch.allclose(t["task_gap"], torch.tensor([0.4, 0.8]))
    y = encode_targets(t, rec.target_names)
    col = {n: y[:, i] for i, n in enumerate(rec.target_names)}
    assert torch.allclose(col["prompt_gap"], torch.tensor([0.7, 0.1]))  # +0.5
    assert torch.allclose(col["task_gap"], torch.tensor([0.9, 1.0]))    # +0.5, clipped
    x, rows = rec.training_rows(masks="chosen")
    assert x.shape == (4, 2 * D) and rows.shape == (4, len(rec.target_names))
    assert torch.equal(x[0, D:], tiny.mask_tokens[0, 0]) and torch.equal(x[1, D:], tiny.mask_tokens[1, 1])
    # one row per mask: mask j's token with mask j's IoU and task gap, the instance's other targets
    per_mask = rec.mask_targets("tiny")
    assert torch.allclose(per_mask["iou_sam"], tiny.ious)
    assert torch.allclose(per_mask["task_gap"], torch.tensor([[0.4, 0.0, 0.2], [0.0, 0.8, 0.6]]))
    assert torch.allclose(per_mask["model_gap"], torch.tensor([[0.1] * 3, [0.05] * 3]))
    x_all, rows_all = rec.training_rows()
    assert x_all.shape == (12, 2 * D) and rows_all.shape == (12, len(rec.target_names))
    assert torch.equal(x_all[4, D:], tiny.mask_tokens[1, 1])  # instance 1, mask 1
    col_all = {n: rows_all[:, i] for i, n in enumerate(rec.target_names)}
    assert torch.allclose(col_all["task_gap"][:6], torch.tensor([0.9, 0.5, 0.7, 0.5, 1.0, 1.0]))
    # at the chosen mask the per-mask rows are the paper's rows
    for i, j in enumerate(tiny.chosen.tolist()):
        assert torch.allclose(rows_all[3 * i + j], rows[i])
    with pytest.raises(ValueError, match="masks must be 'all' or 'chosen'"):
        rec.training_rows(masks="best")
    sub = rec.subset([1])
    assert torch.allclose(sub.targets("tiny")["task_gap"], torch.tensor([0.8]))
    with pytest.raises(ValueError, match="Unknown size"):
        rec.targets("huge")


def test_fused_heads_equal_separate_mlps():
    torch.manual_seed(0)
    heads = USAMHeads(["iou_tiny", "task_gap"], D)
    x = torch.randn(7, 2 * D)
    out = heads(x)
    for h in range(2):
        mlp = nn.Sequential(nn.Linear(2 * D, 2 * D), nn.ReLU(), nn.Linear(2 * D, 2 * D), nn.ReLU(),
                            nn.Linear(2 * D, 1), nn.Sigmoid())
        with torch.no_grad():
            for lin, w, b in zip([mlp[0], mlp[2], mlp[4]], heads.weights, heads.biases, strict=True):
                lin.weight.copy_(w[h].T)
                lin.bias.copy_(b[h, 0])
        assert torch.allclose(out[:, h], mlp(x)[:, 0], atol=1e-6)
    decoded = heads.predict(x[:3, :D], torch.stack([x[:3, D:]] * 3, 1))
    assert torch.allclose(decoded["task_gap"][:, 0], out[:3, 1] - 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="expected features"):
        heads(torch.randn(2, D))


def test_heads_learn_a_known_target():
    """Targets that are a function of the tokens must be learned far below the target variance."""
    g = torch.Generator().manual_seed(0)
    n = 600
    iou_token, mask_tokens = torch.randn(n, D, generator=g), torch.randn(n, 3, D, generator=g)
    scores = torch.rand(n, 3, generator=g)
    chosen = scores.argmax(1)
    quality = torch.sigmoid(2 * mask_tokens[torch.arange(n), chosen, 0])  # read from the token
    ious = torch.rand(n, 3, generator=g) * 0.2
    ious[torch.arange(n), chosen] = quality
    p = Predictions(scores, ious, iou_token, mask_tokens)
    rec = USAMRecords(("tiny", "large"), {"tiny": p, "large": p}, {"tiny": p, "large": p})
    heads, history = train_heads(rec, epochs=30, lr=3e-3, optimizer="adamw", batch_size=64,
                                      device="cpu", progress=False)
    pred = heads.predict_chosen(p)["iou_sam"]
    assert ((pred - quality) ** 2).mean() < 0.25 * quality.var()
    assert history.train_loss[-1] < history.train_loss[0]


@pytest.fixture(scope="module")
def small_world():
    torch.manual_seed(0)
    data = make_ambiguous_shapes(6, seed=0, progress=False)
    segs = {"tiny": create_segmenter("tiny", device="cpu").eval(),
            "small": create_segmenter("small", device="cpu").eval()}
    return data, sample_prompts(data.masks, 4, seed=0), segs


def test_collect_records_matches_a_direct_run(small_world):
    data, prompts, segs = small_world
    rec = collect_records(segs, data, prompts, batch_size=4, device="cpu", progress=False)
    i = 3
    with torch.no_grad():
        out = segs["small"](data.images[data.image_index[i]][None], prompts.dense[i][None])
    assert torch.allclose(rec.dense["small"].scores[i], out.scores[0], atol=1e-5)
    expected = mask_iou(out.mask_logits > 0, data.masks[i][None, None])[0]
    assert torch.allclose(rec.dense["small"].ious[i], expected)
    with pytest.raises(ValueError, match="at least two segmenter sizes"):
        collect_records({"tiny": segs["tiny"]}, data, prompts, progress=False)
    with pytest.raises(ValueError, match="prompts for"):
        collect_records(segs, data, Prompts(prompts.points[:2]), progress=False)


def test_entropy_baselines_collapse_without_variation(small_world):
    """Identical models give H_Θ = H_Std; identical clicks give H_XP = H_Std (the same map)."""
    data, prompts, segs = small_world
    same = {"a": segs["tiny"], "b": segs["tiny"]}
    centre_only = Prompts(prompts.centre.expand(-1, 4, -1).contiguous())
    h = entropy_baselines(same, data, centre_only, "a", device="cpu", progress=False)
    assert torch.allclose(h["H_Θ"], h["H_Std"], atol=1e-5)
    assert torch.allclose(h["H_XP"], h["H_Std"], atol=1e-5)
    assert set(h) == {"H_Std", "H_A", "H_XP", "H_T", "H_Θ", "H_Y"}
    assert all(((v >= 0) & (v <= 1)).all() for v in h.values())
    with pytest.raises(ValueError, match="Unknown size"):
        entropy_baselines(same, data, prompts, "c", progress=False)


def test_augmentations_keep_images_valid():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    for name, aug in AUGMENTATIONS.items():
        y = aug(x, g)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1, name
    flat = torch.full((1, 3, 32, 32), 0.4)
    assert torch.allclose(AUGMENTATIONS["blur_5"](flat, g), flat, atol=1e-6)
    assert torch.equal(AUGMENTATIONS["identity"](x, g), x)


def test_method_costs_names_every_method(small_world):
    data, prompts, segs = small_world
    heads = USAMHeads(["task_gap"], D)
    costs = method_costs(segs, heads, data.images[0], prompts.dense[0], "tiny", repeats=1,
                              device="cpu")
    assert list(costs)[0] == "segmenter" and "USAM heads alone" in costs and len(costs) == 8
    assert any(k.startswith("+ H_Y") for k in costs)
    assert all(v > 0 for v in costs.values())


def test_relative_auc_interval_of_the_oracle_ranking_is_exactly_one():
    from companion.metrics.uncertainty import oracle_curve
    from companion.usam.evaluation import CorrectionResult

    rng = np.random.default_rng(0)
    current = rng.uniform(0, 1, 200)
    refined = np.clip(current + rng.normal(0.1, 0.2, 200), 0, 1)
    gain = refined - current
    result = CorrectionResult({"task": {"oracle": oracle_curve(current, refined)}}, {},
                              {"task": (current, refined, {"good": gain, "bad": -gain})})
    exact = result.difference_interval("task", "good", n_boot=50)
    assert (exact.estimate, exact.low, exact.high) == (1.0, 1.0, 1.0)
    apart = result.difference_interval("task", "good", "bad", groups=np.arange(200) // 4,
                                       n_boot=50)
    assert apart.low > 1.0  # the reversed ranking loses area: its relative AUC is negative
    with pytest.raises(ValueError, match="Unknown method"):
        result.difference_interval("task", "USAM")


def test_mask_spread_is_zero_for_heads_blind_to_the_mask():
    from companion.usam.evaluation import mask_spread
    g = torch.Generator().manual_seed(3)
    n = 20
    ious = torch.rand(n, 3, generator=g)
    scores = torch.rand(n, 3, generator=g)
    same = torch.randn(n, 1, D, generator=g).expand(n, 3, D)  # three identical mask tokens
    p = Predictions(scores, ious, torch.randn(n, D, generator=g), same)
    rec = USAMRecords(("tiny", "large"), {"tiny": p, "large": p}, {"tiny": p, "large": p})
    heads = USAMHeads(rec.target_names, D)
    spread = mask_spread(rec, heads, "tiny")
    assert spread.predicted["task_gap"] == pytest.approx(0.0, abs=1e-6)
    width = float((ious.max(1).values - ious.min(1).values).mean())
    assert spread.true["task_gap"] == pytest.approx(width)
    assert spread.true["iou_sam"] == pytest.approx(width)
    assert spread.true["model_gap"] == 0.0 and spread.true["prompt_gap"] == 0.0
    assert spread.picks_best["SamScore"] == pytest.approx(
        float((scores.argmax(1) == ious.argmax(1)).float().mean()))
