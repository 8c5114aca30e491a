"""UncertainSAM's Monte-Carlo entropy baselines over augmentations, single clicks and sizes."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.ambiguous_shapes import AmbiguousShapes
from ..data.prompts import Prompts
from ..metrics.segmentation import mask_iou
from ..metrics.uncertainty import mask_entropy
from ..runtime import resolve_device
from .records import instance_batches
from .segmenter import PromptableSegmenter


def _jpeg(quality: int) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    def apply(images: torch.Tensor, _gen: torch.Generator) -> torch.Tensor:
        out = []
        for img in (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy():
            buffer = io.BytesIO()
            Image.fromarray(img).save(buffer, format="JPEG", quality=quality)
            out.append(np.asarray(Image.open(buffer)))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255).to(images)
    return apply


def _noise(variance: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    def apply(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        noise = torch.randn(images.shape, generator=gen).to(images) * math.sqrt(variance) / 255
        return (images + noise).clamp(0, 1)
    return apply


def _blur(kernel: int) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    def apply(images: torch.Tensor, _gen: torch.Generator) -> torch.Tensor:
        sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8  # OpenCV's default sigma for a kernel size
        x = torch.arange(kernel, dtype=images.dtype, device=images.device) - kernel // 2
        k1 = torch.exp(-x**2 / (2 * sigma**2))
        k1 = k1 / k1.sum()
        k2 = (k1[:, None] * k1[None]).expand(3, 1, kernel, kernel)
        padded = F.pad(images, [kernel // 2] * 4, mode="reflect")
        return F.conv2d(padded, k2, groups=3)
    return apply


# the paper's image augmentations t ∈ T (identity first)
AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "identity": lambda images, _gen: images,
    "jpeg_q10": _jpeg(10),
    "jpeg_q30": _jpeg(30),
    "noise_var5000": _noise(5000.0),
    "blur_5": _blur(5),
}


def _best(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Probability map of the best mask w.r.t. the ground truth, (B, S, S)."""
    best = mask_iou(logits > 0, masks[:, None]).argmax(1)
    return logits[torch.arange(len(logits)), best].sigmoid()


def mixture(logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Score-weighted mixture Σ_j w_j P_j with w_j = s_j / Σ_k s_k, (B, S, S)."""
    w = scores / scores.sum(1, keepdim=True).clamp(min=1e-12)
    return (w[..., None, None] * logits.sigmoid()).sum(1)


@torch.inference_mode()
def entropy_baselines(segmenters: Mapping[str, PromptableSegmenter], data: AmbiguousShapes,
                      prompts: Prompts, size: str, *, batch_size: int = 128, seed: int = 0,
                      device=None, progress: bool = True) -> dict[str, torch.Tensor]:
    """The paper's Monte-Carlo entropies for segmenter ``size``, each (M,).

    ``H_Std`` H(P_best); ``H_A`` H(Σ_j w_j P_j) (task); ``H_XP`` H(mean over the single clicks of
    ``prompts`` of P_best) (prompt); ``H_T`` H(mean over AUGMENTATIONS of P_best) (image);
    ``H_Θ`` H(mean over all sizes of P_best) (model); ``H_Y`` H of the mean score-weighted
    mixture over the product sizes × AUGMENTATIONS × single clicks, every run once, as in the
    official code (predictive). "Best" is chosen with the ground truth, as in the paper.
    """
    if size not in segmenters:
        raise ValueError(f"Unknown size {size!r}: choose one of {', '.join(segmenters)}.")
    device = resolve_device(device)
    gen = torch.Generator().manual_seed(seed)
    n_points = prompts.points.shape[1]
    out: dict[str, list[torch.Tensor]] = {k: [] for k in
                                          ("H_Std", "H_A", "H_XP", "H_T", "H_Θ", "H_Y")}
    for idx, images, masks in instance_batches(data, batch_size, device, progress,
                                               f"MC entropies ({size})"):
        clicks = [prompts.single(j)[idx].to(device) for j in range(n_points)]
        best_theta, best_t, best_p, mix_sum, n_runs = [], [], [], 0.0, 0
        # the product θ × t × x_P, every run once, feeds H_Y; the other entropies read their
        # slices: all sizes on the clean image and centre click (H_Θ), and for ``size`` the
        # augmentations with the centre click (H_T) and the clicks on the clean image (H_XP)
        for name, m in segmenters.items():
            m = m.eval().to(device)
            for aug_name, aug in AUGMENTATIONS.items():
                emb = m.embed_image(aug(images, gen))
                for j, click in enumerate(clicks):
                    o = m.decode(emb, click)
                    mix = mixture(o.mask_logits, o.scores)
                    mix_sum, n_runs = mix_sum + mix, n_runs + 1
                    clean, best = aug_name == "identity", _best(o.mask_logits, masks)
                    if clean and j == 0:
                        best_theta.append(best)
                    if name == size and j == 0:
                        best_t.append(best)
                    if name == size and clean:
                        best_p.append(best)
                    if name == size and clean and j == 0:
                        out["H_Std"].append(mask_entropy(best))
                        out["H_A"].append(mask_entropy(mix))
        out["H_XP"].append(mask_entropy(torch.stack(best_p).mean(0)))
        out["H_T"].append(mask_entropy(torch.stack(best_t).mean(0)))
        out["H_Θ"].append(mask_entropy(torch.stack(best_theta).mean(0)))
        out["H_Y"].append(mask_entropy(mix_sum / n_runs))
    return {k: torch.cat(v).cpu() for k, v in out.items()}
