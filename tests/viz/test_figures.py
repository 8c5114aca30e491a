"""Tests of the figure helpers (Agg backend): image conversion, grids, heat-map overlays, explorers."""

import base64
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from companion.viz import (  # noqa: E402
    HEATMAP_CMAP,
    image_grid,
    interactive_figure,
    overlay_heatmap,
    resize_heatmap,
    static_figure,
    to_image,
    use_style,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_to_image_layouts_agree():
    rgb = np.random.default_rng(0).random((5, 7, 3))
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    for x in (rgb, chw, chw.numpy(), torch.from_numpy(rgb).float()):
        np.testing.assert_allclose(to_image(x), rgb, atol=1e-6)
    np.testing.assert_allclose(to_image(chw.bfloat16()), rgb, atol=1e-2)  # mixed-precision outputs
    assert to_image(chw).shape == (5, 7, 3)


@pytest.mark.parametrize("shape", [(5, 7), (1, 5, 7), (5, 7, 1)])
def test_to_image_grey_becomes_three_equal_channels(shape):
    grey = np.linspace(0, 1, 35).reshape(5, 7)
    img = to_image(torch.from_numpy(grey.reshape(shape)))
    assert img.shape == (5, 7, 3)
    for c in range(3):
        np.testing.assert_allclose(img[..., c], grey)


def test_to_image_value_ranges():
    u8 = np.array([[0, 51, 255]], dtype=np.uint8)
    np.testing.assert_allclose(to_image(u8)[..., 0], [[0.0, 0.2, 1.0]])
    normalised = torch.tensor([[[-2.0, 0.0, 2.0]]])
    np.testing.assert_allclose(to_image(normalised)[..., 0], [[0.0, 0.5, 1.0]])
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    original = torch.rand(3, 4, 4)
    standardised = (original - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    np.testing.assert_allclose(to_image(standardised, mean=mean, std=std),
                               original.permute(1, 2, 0).numpy(), atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 5, 6), (2, 3, 5, 5), (7,), (5, 5, 4)])
def test_to_image_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match="grey or RGB"):
        to_image(torch.rand(shape))


def test_resize_heatmap_is_bilinear():
    heat = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    resized = resize_heatmap(heat, (4, 4))
    # half-pixel centres: output columns sit at -0.25, 0.25, 0.75, 1.25 in input units
    np.testing.assert_allclose(resized, np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)))
    np.testing.assert_allclose(resize_heatmap(np.full((1, 3, 3), 2.0), (9, 6)), np.full((9, 6), 2.0))
    np.testing.assert_array_equal(resize_heatmap(np.eye(3)[..., None], (3, 3)), np.eye(3))
    with pytest.raises(ValueError, match="one heat map"):
        resize_heatmap(np.zeros((2, 3, 3)), (6, 6))


def test_image_grid_layout_and_contents():
    batch = torch.rand(5, 3, 8, 8)
    fig = image_grid(batch, titles=list("abcde"), ncols=3)
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes] == list("abcde")
    first = fig.axes[0].images[0].get_array()
    assert first.shape == (8, 8, 3) and first.min() >= 0 and first.max() <= 1
    np.testing.assert_allclose(first, batch[0].permute(1, 2, 0).numpy(), atol=1e-6)
    assert len(image_grid([np.zeros((4, 4)), torch.ones(1, 4, 4)]).axes) == 2
    with pytest.raises(ValueError, match="titles"):
        image_grid(batch, titles=["x"])
    with pytest.raises(ValueError, match="4 dimensions"):
        image_grid(torch.rand(3, 8, 8))


def test_overlay_heatmap_resizes_to_the_image():
    use_style()
    assert plt.rcParams["image.cmap"] == HEATMAP_CMAP
    image = torch.rand(3, 32, 48)
    heat = torch.rand(4, 6)
    fig, ax = plt.subplots()
    assert overlay_heatmap(image, heat, ax=ax, alpha=0.4) is ax
    base, overlay = ax.images
    assert base.get_array().shape == (32, 48, 3)
    assert overlay.get_array().shape == (32, 48)
    assert overlay.get_alpha() == 0.4 and overlay.get_cmap().name == HEATMAP_CMAP
    np.testing.assert_allclose(overlay.get_array(), resize_heatmap(heat, (32, 48)))
    with pytest.raises(ValueError, match="alpha"):
        overlay_heatmap(image, heat, ax=ax, alpha=2)


def bars(k, colour="C0"):
    fig, ax = plt.subplots()
    ax.bar(range(k), np.ones(k), color=colour)
    return fig


def test_interactive_figure_redraws_on_change():
    slider = widgets.IntSlider(value=2, min=1, max=6)
    explorer = interactive_figure(bars, k=slider, colour="C1")
    assert isinstance(explorer, widgets.Widget)
    out = explorer.children[-1]
    assert explorer.children[0] is slider and isinstance(out, widgets.Output)
    first = out.outputs[0]["data"]["image/png"]
    assert base64.b64decode(first).startswith(b"\x89PNG")
    slider.value = 5
    assert out.outputs[0]["data"]["image/png"] != first
    assert plt.get_fignums() == []  # drawn figures are closed, not left for the inline backend
    fig = static_figure(bars, k=slider, colour="C1")
    assert len(fig.axes[0].patches) == 5


def test_interactive_figure_reports_errors():
    with pytest.raises(TypeError, match="Figure"):
        interactive_figure(lambda k: None, k=widgets.IntSlider(value=1))

    def fragile(k):
        if k > 3:
            raise RuntimeError("k too large")
        return bars(k)
    slider = widgets.IntSlider(value=1, min=1, max=5)
    explorer = interactive_figure(fragile, k=slider)
    slider.value = 4
    shown = explorer.children[-1].outputs[0]
    assert shown["output_type"] == "stream" and "k too large" in shown["text"]


def test_an_explorer_is_a_live_widget_that_carries_its_figure():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display
    from IPython.utils.capture import capture_output

    slider = widgets.IntSlider(value=2, min=1, max=6)
    explorer = interactive_figure(bars, k=slider)
    shown = lambda: explorer.children[-1].outputs[0]["data"]["image/png"]  # what the widget draws
    InteractiveShell.instance()
    with capture_output() as captured:
        display(explorer)
    (output,) = captured.outputs
    assert output.data["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.model_id
    assert output.data["image/png"] == shown()
    first = shown()
    slider.value = 5
    assert explorer._repr_mimebundle_()["image/png"] == shown() != first


def test_the_book_shows_an_explorer_as_its_picture():
    import yaml
    from myst_nb.core.render import get_mime_priority

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "_config.yml").read_text())
    overrides = [tuple(o) for o in config["sphinx"]["config"]["nb_mime_priority_overrides"]]
    bundle = {"text/plain", "image/png", "application/vnd.jupyter.widget-view+json"}
    for builder in ("html", "dirhtml", "singlehtml"):
        chosen = next(m for m in get_mime_priority(builder, overrides) if m in bundle)
        assert chosen == "image/png"
    widget_only = {"text/plain", "application/vnd.jupyter.widget-view+json"}  # a progress bar
    assert next(m for m in get_mime_priority("html", overrides) if m in widget_only) != "text/plain"
