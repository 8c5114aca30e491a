"""Known-answer tests of the uses of UncertainSAM's gaps: cascade, refinement, filtering."""

import numpy as np
import pytest
import torch

from companion.usam.uses import cascade, filtering_curves, refinement_curves


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    current = rng.uniform(0.2, 0.9, n)
    refined = np.clip(current + rng.normal(0.05, 0.2, n), 0, 1)
    return current, refined


def test_refinement_curves_end_points_and_oracle():
    cur, ref = _data()
    gain = ref - cur
    use = refinement_curves(cur, ref, {"oracle": gain, "worst": -gain})
    for k, c in use.curves.items():  # nothing acted on, then everything
        assert c[0] == pytest.approx(cur.mean()), k
        assert c[-1] == pytest.approx(ref.mean()), k
    # the true gain is the best order at every fraction, its negation the worst
    assert (use.curves["oracle"] >= use.curves["random"] - 1e-12).all()
    assert (use.curves["worst"] <= use.curves["random"] + 1e-12).all()
    # the oracle peaks where exactly the positive gains are taken
    assert use.curves["oracle"].max() == pytest.approx(cur.mean() + gain[gain > 0].sum() / len(cur),
                                                       abs=0.01)
    # random is the straight line between the end points
    np.testing.assert_allclose(use.curves["random"], cur.mean() + use.fractions * gain.mean())


def test_filtering_curves_perfect_ranking_and_random():
    iou = np.r_[np.full(30, 0.9), np.full(70, 0.2)]
    use = filtering_curves(iou, {"perfect": iou, "reversed": -iou}, good=0.75,
                           fractions=[0.1, 0.3, 0.5, 1.0])
    np.testing.assert_allclose(use.curves["perfect"], [1.0, 1.0, 0.6, 0.3])
    np.testing.assert_allclose(use.curves["reversed"], [0.0, 0.0, 0.0, 0.3])
    np.testing.assert_allclose(use.curves["random"], 0.3)


def test_difference_interval_holds_its_estimate():
    cur, ref = _data(seed=1)
    use = refinement_curves(cur, ref, {"oracle": ref - cur, "noise": np.random.default_rng(2)
                                       .normal(size=len(cur))})
    iv = use.difference_interval("oracle", "random", groups=np.arange(len(cur)) // 2, n_boot=200)
    assert iv.low <= iv.estimate <= iv.high
    assert iv.low > 0  # the oracle beats a random order clearly
    same = use.difference_interval("noise", "noise", n_boot=50)
    assert same.low == same.high == 0.0
    with pytest.raises(ValueError, match="Unknown method"):
        use.difference_interval("nope")


def test_cascade_threshold_rule():
    gap = torch.tensor([-0.2, 0.0, 0.1, 0.5])
    assert cascade(gap, 0.0).tolist() == [False, True, True, True]
    assert cascade(gap, 0.3).tolist() == [False, False, False, True]
    assert not cascade(gap, 1.0).any()
