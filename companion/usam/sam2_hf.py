"""UncertainSAM's full world: SAM 2.1 through Hugging Face ``transformers``, read as our tokens.

``Sam2Tokens`` wraps a ``transformers.Sam2Model`` and returns, per prompt, the three multimask
logits, their predicted IoUs, the IoU token and the mask tokens that made them. SAM 2's decoder
runs its two-way transformer on [object-score, IoU, mask₀ … mask₃, prompts…]; the multimask
outputs come from mask tokens 1…3, so mask j is paired with token j + 1 (``pairing="own"``, the
default, with which our heads are trained). The official USAM code pairs it with token j, its
neighbour's, and its MLPs were trained that way: ``load_official_heads`` reads them
(``models/mlps/sam2.1/<target>/model.pth``) into :class:`USAMHeads`, and they must be fed tokens
from ``Sam2Tokens(..., pairing="official")``, the pairing they learned.
Needs ``pip install transformers`` (the ``full`` extra); weights are downloaded on first use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..metrics.segmentation import mask_iou
from ..runtime import resolve_device
from .heads import USAMHeads
from .records import Predictions
from .segmenter import SegmenterOutput

SAM2_CHECKPOINTS = {
    "tiny": "facebook/sam2.1-hiera-tiny",
    "small": "facebook/sam2.1-hiera-small",
    "base_plus": "facebook/sam2.1-hiera-base-plus",
    "large": "facebook/sam2.1-hiera-large",
}
# official USAM MLP folder → our target name
OFFICIAL_HEADS = {
    "iou_tiny": "iou_tiny", "iou_small": "iou_small", "iou_base_plus": "iou_base_plus",
    "iou_large": "iou_large", "iou_unsupervised": "iou_sam", "iou_dense_prompt": "iou_dense",
    "model_gap": "model_gap", "prompt_gap": "prompt_gap", "task_gap": "task_gap",
}


def _transformers():
    try:
        import transformers
    except ImportError as err:
        raise ImportError("The full world's SAM 2.1 needs Hugging Face transformers: "
                          "pip install 'transformers>=4.56' (or the package's [full] extra).") from err
    if not hasattr(transformers, "Sam2Model"):
        raise ImportError(f"transformers {transformers.__version__} has no Sam2Model; upgrade it "
                          "(pip install -U 'transformers>=4.56').")
    return transformers


# where the three multimask outputs' tokens sit among [object score, IoU, mask 0 … mask 3]
MASK_TOKENS = {"own": slice(3, 6), "official": slice(2, 5)}


class Sam2Tokens:
    """A ``transformers`` SAM 2 model that also returns the IoU token and a token for each mask.

    ``pairing="own"`` gives each mask the token that made it; ``"official"`` the token before it,
    as the official USAM code does (use it only to feed the official MLPs).
    """

    def __init__(self, model, processor=None, *, pairing: str = "own"):
        if pairing not in MASK_TOKENS:
            raise ValueError(f"pairing must be one of {sorted(MASK_TOKENS)}, got {pairing!r}: 'own' "
                             "for heads trained here, 'official' for the official USAM MLPs.")
        self.model = model.eval()
        self.processor = processor
        self.pairing = pairing
        self._tokens: torch.Tensor | None = None
        model.mask_decoder.transformer.register_forward_hook(self._keep_tokens)

    def _keep_tokens(self, _module, _inputs, output) -> None:
        self._tokens = output[0]  # (B, point_batch, 6 + K, D)

    @classmethod
    def from_pretrained(cls, size: str = "tiny", *, device=None, pairing: str = "own") -> Sam2Tokens:
        """SAM 2.1 of a size (``tiny``, ``small``, ``base_plus``, ``large``) or a Hub id."""
        tf = _transformers()
        name = SAM2_CHECKPOINTS.get(size, size)
        if "/" not in name:
            raise ValueError(f"Unknown SAM 2.1 size {size!r}: choose one of "
                             f"{', '.join(SAM2_CHECKPOINTS)} or pass a Hub id.")
        shown = tf.utils.logging.is_progress_bar_enabled()
        tf.utils.logging.disable_progress_bar()  # no loading bars in a chapter's output
        try:
            model = tf.Sam2Model.from_pretrained(name).to(resolve_device(device))
            processor = tf.Sam2Processor.from_pretrained(name)
        finally:
            if shown:
                tf.utils.logging.enable_progress_bar()
        return cls(model, processor, pairing=pairing)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def input_size(self) -> int:
        """The side of the square input image the prompts' coordinates refer to."""
        return int(self.model.config.prompt_encoder_config.image_size)

    @torch.inference_mode()
    def embed(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """The image encoder's feature maps for ``pixel_values`` (B, 3, H, W), to prompt many times."""
        return self.model.get_image_embeddings(pixel_values)

    @torch.inference_mode()
    def __call__(self, pixel_values: torch.Tensor | None, points: torch.Tensor,
                 labels: torch.Tensor | None = None, *,
                 image_embeddings: list[torch.Tensor] | None = None) -> SegmenterOutput:
        """Three masks per prompt for ``pixel_values`` (B, 3, H, W) and clicks ``points`` (B, K, 2).

        Clicks are (x, y) in the model's input pixels (the processor rescales them); the logits are
        SAM 2's low-resolution masks (B, 3, H/4, W/4). Give ``image_embeddings`` (from
        :meth:`embed`) instead of ``pixel_values`` to skip the image encoder.
        """
        if (pixel_values is None) == (image_embeddings is None):
            raise ValueError("give either pixel_values or image_embeddings (from embed), not both "
                             "or neither.")
        if pixel_values is not None and pixel_values.ndim != 4:
            raise ValueError(f"pixel_values must be (B, 3, H, W), got {tuple(pixel_values.shape)}.")
        n_images = len(pixel_values) if pixel_values is not None else len(image_embeddings[-1])
        if points.ndim != 3 or points.shape[-1] != 2 or len(points) != n_images:
            raise ValueError(f"points must be (B, K, 2) with one prompt per image, got "
                             f"{tuple(points.shape)} for {n_images} images.")
        size = self.input_size
        if ((points < 0) | (points > size)).any():
            raise ValueError(f"clicks must lie inside the {size}×{size} input image.")
        if labels is None:
            labels = torch.ones(points.shape[:2], dtype=torch.long, device=points.device)
        out = self.model(pixel_values=pixel_values, image_embeddings=image_embeddings,
                         input_points=points[:, None], input_labels=labels[:, None],
                         multimask_output=True)
        tokens = self._tokens[:, 0]
        return SegmenterOutput(mask_logits=out.pred_masks[:, 0], scores=out.iou_scores[:, 0],
                               iou_token=tokens[:, 1], mask_tokens=tokens[:, MASK_TOKENS[self.pairing]])


def _check_instance(i: int, image: np.ndarray, mask: np.ndarray, pts: np.ndarray) -> None:
    """Instance ``i``: a mask of its image's size and a non-empty set of clicks inside it."""
    h, w = image.shape[:2]
    if mask.shape != (h, w):
        raise ValueError(f"instance {i}: the mask is {mask.shape} but its image is {(h, w)} "
                         "(H, W): give masks at the image's own size, not resized.")
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError(f"instance {i}: the prompt set has shape {pts.shape}; give at least one "
                         "(x, y) click as a (K, 2) array with K >= 1.")
    outside = (pts[:, 0] < 0) | (pts[:, 0] > w - 1) | (pts[:, 1] < 0) | (pts[:, 1] > h - 1)
    if outside.any():
        raise ValueError(f"instance {i}: click (x, y) = {tuple(pts[outside][0].tolist())} lies "
                         f"outside the {w}×{h} image; clicks are pixel coordinates with x in "
                         f"[0, {w - 1}] and y in [0, {h - 1}].")


def predict_sam2(segmenter: Sam2Tokens, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                 points: Sequence[np.ndarray], *, progress: bool = True) -> Predictions:
    """Run SAM 2.1 on each (image, click set) and score the three masks against ``masks``.

    ``images`` are HWC uint8, ``masks`` HW bool at the image's size, ``points`` (K, 2) (x, y).
    Consecutive instances that share one image (the same array object) encode it once.
    """
    if not len(images) == len(masks) == len(points):
        raise ValueError(f"got {len(images)} images, {len(masks)} masks and {len(points)} "
                         "prompts: give one mask and one prompt per image.")
    for i, (image, mask, pts) in enumerate(zip(images, masks, points, strict=True)):
        _check_instance(i, np.asarray(image), np.asarray(mask), np.asarray(pts, dtype=float))
    if segmenter.processor is None:
        raise ValueError("predict_sam2 needs the Sam2Processor: build the segmenter with "
                         "Sam2Tokens.from_pretrained(...).")
    processor, rows = segmenter.processor, []
    last = None  # (image, its embeddings, its size): consecutive instances of one image share them
    for image, mask, pts in tqdm(list(zip(images, masks, points, strict=True)), desc="SAM 2.1",
                                 disable=not progress):
        if last is None or last[0] is not image:
            # a writable copy: torch warns on read-only arrays (images read with np.asarray)
            encoded = processor(images=np.array(image), return_tensors="pt")
            last = (image, segmenter.embed(encoded["pixel_values"].to(segmenter.device)),
                    encoded["original_sizes"])
        _, embeddings, size = last
        pts = np.asarray(pts, dtype=float)
        inputs = processor(input_points=[[pts.tolist()]], input_labels=[[[1] * len(pts)]],
                           original_sizes=size, return_tensors="pt").to(segmenter.device)
        out = segmenter(None, inputs["input_points"][:, 0], inputs["input_labels"][:, 0],
                        image_embeddings=embeddings)
        full = processor.post_process_masks(out.mask_logits[:, None].cpu(), size.cpu())[0][0]
        iou = mask_iou(full.bool(), torch.as_tensor(np.asarray(mask, dtype=bool)))
        rows.append((out.scores[0].float().cpu(), iou.float(),
                     out.iou_token[0].float().cpu(), out.mask_tokens[0].float().cpu()))
    return Predictions(*(torch.stack([r[k] for r in rows]) for k in range(4)))


def load_official_heads(folder: str | os.PathLike, *, names: Sequence[str] | None = None,
                        device=None) -> USAMHeads:
    """The official USAM MLPs in ``folder`` (``<target>/model.pth``, 3 linear layers each).

    They were trained on the official code's token pairing: give them predictions made with
    ``Sam2Tokens(..., pairing="official")``; with our own pairing their inputs are off-distribution.
    """
    folder = Path(folder)
    found = [n for n in OFFICIAL_HEADS if (folder / n / "model.pth").is_file()]
    names = list(names) if names is not None else found
    missing = [n for n in names if n not in found]
    if not names or missing:
        raise FileNotFoundError(f"No official USAM MLP weights for {missing or 'any target'} in "
                                f"{folder}: expected <target>/model.pth with targets among "
                                f"{', '.join(OFFICIAL_HEADS)} (models/mlps/sam2.1 of the official "
                                "repository).")
    layers = [_three_linear_layers(torch.load(folder / n / "model.pth", map_location="cpu",
                                              weights_only=True), folder / n / "model.pth")
              for n in names]
    d_in = layers[0][0][0].shape[1]
    heads = USAMHeads([OFFICIAL_HEADS[n] for n in names], d_in // 2, hidden=layers[0][0][0].shape[0])
    with torch.no_grad():
        for h, head_layers in enumerate(layers):
            for i, (w, b) in enumerate(head_layers):
                heads.weights[i][h].copy_(w.T)
                heads.biases[i][h, 0].copy_(b)
    return heads.to(resolve_device(device)).eval()


def _three_linear_layers(state, path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (weight, bias) pairs of a state dict holding exactly three linear layers, in order."""
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of an MLP.")
    weights = [k for k in state if k.endswith("weight") and state[k].ndim == 2]
    pairs = [(state[k], state[k[:-len("weight")] + "bias"]) for k in weights]
    shapes = [tuple(w.shape) for w, _ in pairs]
    if len(pairs) != 3 or shapes[2][0] != 1 or shapes[0][0] != shapes[1][0] != shapes[1][1]:
        raise ValueError(f"{path} is not a USAM MLP (three linear layers 2D→H→H→1); found "
                         f"weights of shapes {shapes}.")
    return [(w.float(), b.float()) for w, b in pairs]
