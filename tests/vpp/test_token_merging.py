"""Tests of the token-merging baseline against a direct reference implementation."""

import pytest
import torch

from companion.vpp.segmenter import VideoSegmenter, VideoSegmenterConfig
from companion.vpp.token_merging import (
    MergeState,
    TokenMergingSegmenter,
    bipartite_merge,
    merges_for_keep_ratio,
)


def _reference_merge(x, metric, sizes, r):
    """Loop version of ToMe's bipartite soft matching for one sample."""
    n = x.shape[0]
    a, b = list(range(0, n, 2)), list(range(1, n, 2))
    m = metric / metric.norm(dim=-1, keepdim=True)
    best = {i: max(b, key=lambda j: float(m[i] @ m[j])) for i in a}
    sim = {i: float(m[i] @ m[best[i]]) for i in a}
    merged = sorted(a, key=lambda i: -sim[i])[:r]
    groups = {j: [j] for j in b}
    for i in merged:
        groups[best[i]].append(i)
    kept = [i for i in a if i not in merged]
    out = [x[i] for i in sorted(kept, key=lambda i: a.index(i))]
    out_sizes = [sizes[i] for i in sorted(kept, key=lambda i: a.index(i))]
    for j in b:
        s = sum(sizes[k] for k in groups[j])
        out.append(sum(x[k] * sizes[k] for k in groups[j]) / s)
        out_sizes.append(s)
    return torch.stack(out), torch.tensor(out_sizes)


@pytest.mark.parametrize("n, r", [(10, 3), (9, 4), (12, 0)])
def test_bipartite_merge_matches_the_reference(n, r):
    torch.manual_seed(n + r)
    x, metric = torch.randn(1, n, 6), torch.randn(1, n, 4)
    sizes = torch.randint(1, 4, (1, n)).float()
    state = MergeState(sizes, torch.arange(n).unsqueeze(0))
    merged, new_state = bipartite_merge(x, metric, state, r)
    ref_x, ref_sizes = _reference_merge(x[0], metric[0], sizes[0], r)
    order_mine = torch.argsort(merged[0, :, 0])
    order_ref = torch.argsort(ref_x[:, 0])
    assert torch.allclose(merged[0, order_mine], ref_x[order_ref], atol=1e-5)
    assert torch.allclose(new_state.sizes[0, order_mine], ref_sizes[order_ref].float())
    # Every patch points at the token that absorbed it: unmerging restores merged values.
    assert new_state.sizes.sum() == sizes.sum()
    total_after = (merged[0] * new_state.sizes[0, :, None]).sum(0)
    assert torch.allclose(total_after, (x[0] * sizes[0, :, None]).sum(0), atol=1e-4)


def test_zero_merges_is_the_dense_model_and_counts_follow_r():
    torch.manual_seed(0)
    seg = VideoSegmenter(VideoSegmenterConfig(image_size=32, dim=32, heads=2, depth=4, num_queries=4)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(TokenMergingSegmenter(seg, 0)(x)["masks"], seg(x)["masks"], atol=1e-5)
        tokens, ratios = TokenMergingSegmenter(seg, 3).forward_tokens(x)
    assert tokens.shape == (2, 16, 32)
    assert ratios.tolist() == pytest.approx([16 / 16, 13 / 16, 10 / 16, 7 / 16])


def test_merges_for_keep_ratio_and_bad_input():
    r = merges_for_keep_ratio(0.54, 144, 12)
    assert abs(1 - r * 5.5 / 144 - 0.54) < 5.5 / 144
    with pytest.raises(ValueError):
        merges_for_keep_ratio(0.0, 144, 12)
    with pytest.raises(ValueError):
        TokenMergingSegmenter(VideoSegmenter(VideoSegmenterConfig(image_size=32, dim=32, heads=2)), -1)
