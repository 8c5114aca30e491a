"""CHiQPM's figures draw what they are given: the tree's nodes, the set, the comparison lines."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from companion.metrics.conformal import ConformalTable  # noqa: E402
from companion.metrics.hierarchy import decision_hierarchy  # noqa: E402
from companion.viz.chiqpm import (  # noqa: E402
    plot_class_affinity,
    plot_conformal_comparison,
    plot_decision_tree,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def tiny():
    W = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]])
    f = np.array([[3.0, 2.0, 1.0]])  # paths: c0 0→1, c1 0→2, c2 1→2
    return decision_hierarchy(f, W)


def test_tree_has_one_node_per_distinct_prefix_and_marks_the_set():
    h = tiny()
    fig = plot_decision_tree(h, 0, class_names=["a", "b", "c"], feature_ids=[10, 11, 12],
                             in_set=[True, True, False], image=np.zeros((8, 8, 3)))
    ax = fig.axes[1]
    texts = [t.get_text() for t in ax.texts]
    # inner nodes: f10 (shared by a and b), f11 (c's first step); leaves: last step + name
    assert sorted(t for t in texts if "\n" not in t and t.startswith("f")) == ["f10", "f11"]
    assert sorted(t for t in texts if "\n" in t) == ["f11\na", "f12\nb", "f12\nc"]
    leaf = {t.get_text(): t.get_bbox_patch().get_facecolor() for t in ax.texts if "\n" in t.get_text()}
    assert leaf["f11\na"] == leaf["f12\nb"] != leaf["f12\nc"]
    assert len(ax.lines) == 5  # root→f10, root→f11, f10→a, f10→b, f11→c


def test_comparison_draws_every_method_and_the_target():
    rows = tuple({"method": m, "alpha": a, "coverage": 1 - a, "coverage_sd": 0.01, "size": 1.0,
                  "size_sd": 0.1, "coherence": 1.0, "coherence_sd": 0.0, "level": np.nan}
                 for m in ("CHiQPM", "LAC") for a in (0.1, 0.2))
    table = ConformalTable(rows)
    assert table.get("LAC", 0.2, "coverage") == pytest.approx(0.8)
    fig = plot_conformal_comparison(table)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert sorted(labels) == ["1 − α (target)", "CHiQPM", "LAC"]
    assert "<table>" in table._repr_html_() and "0.800 ± 0.010" in table._repr_html_()
    assert "0.800 ± 0.010" in repr(table) and "nan" not in repr(table)
    with pytest.raises(KeyError, match="no row for method 'APS'"):
        table.get("APS", 0.1)


def test_affinity_is_shown_in_superclass_order():
    A = np.eye(4)
    A[0, 2] = A[2, 0] = 0.5
    fig = plot_class_affinity(A, class_names=list("abcd"), superclass=[0, 1, 0, 1])
    shown = fig.axes[0].images[0].get_array()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "c", "b", "d"]
    assert shown[0, 1] == 0.5
