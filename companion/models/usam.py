"""UncertainSAM: small MLP heads on a promptable segmenter's tokens predict its IoU and its gaps.

For every instance and every segmenter size θ the segmenter runs on the centre click c and on the
dense prompt x_P*. The heads read l = [IoU token ; mask token of the score-chosen mask] (mask j is
paired with its own token j) and regress the paper's targets:

* ``iou_<size>``: best-of-3 IoU of the segmenter of that size (USAM_θ; from any size's tokens),
* ``iou_sam``: IoU of the mask with the highest predicted IoU (USAM_SAM),
* ``iou_dense``: best-of-3 IoU with the dense prompt (USAM_xP*),
* ``model_gap`` Δ*_Θ = IoU_large − IoU_tiny, ``prompt_gap`` Δ*_XP = IoU_dense − IoU_θ,
  ``task_gap`` Δ*_A = IoU_θ − IoU_SAM.

Gaps are shifted by +0.5 and every target is clipped to [0, 1]; each head is
Linear(2D→2D)–ReLU–Linear(2D→2D)–ReLU–Linear(2D→1)–Sigmoid trained with MSE and SGD.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ..data.ambiguous_shapes import AmbiguousShapes
from ..data.prompts import Prompts
from ..metrics.efficiency import time_interleaved
from ..metrics.uncertainty import (CorrectionCurve, correction_curve, mask_entropy, oracle_curve,
                                   relative_auc)
from ..runtime import resolve_device
from ..train import History, fit
from .segmenter import PromptableSegmenter, mask_iou

GAP_SHIFT = 0.5
GAPS = ("model_gap", "prompt_gap", "task_gap")
# the paper's tuned SGD settings for COCO (default row of its hyper-parameter table)
PAPER_SGD = {"lr": 0.008713, "momentum": 0.1639, "weight_decay": 1e-3, "batch_size": 189,
             "epochs": 36}


# ------------------------------------------------------------------------------ predictions

@dataclass(frozen=True)
class Predictions:
    """One segmenter's output on every instance for one prompt, scored against the ground truth."""

    scores: torch.Tensor       # (M, 3) predicted IoU ("SamScore")
    ious: torch.Tensor         # (M, 3) IoU of each mask with the ground truth
    iou_token: torch.Tensor    # (M, D)
    mask_tokens: torch.Tensor  # (M, 3, D), token j made mask j

    @property
    def chosen(self) -> torch.Tensor:
        """Index of the mask with the highest predicted IoU, (M,)."""
        return self.scores.argmax(1)

    @property
    def iou_best(self) -> torch.Tensor:
        """IoU_θ: best-of-3 IoU against the ground truth, (M,)."""
        return self.ious.max(1).values

    @property
    def iou_sam(self) -> torch.Tensor:
        """IoU_SAM: IoU of the score-chosen mask, (M,)."""
        return self.ious.gather(1, self.chosen[:, None])[:, 0]

    @property
    def sam_score(self) -> torch.Tensor:
        """The predicted IoU of the chosen mask (the baseline's confidence), (M,)."""
        return self.scores.max(1).values

    def features(self) -> torch.Tensor:
        """USAM's input l = [IoU token ; mask token of the chosen mask], (M, 2D)."""
        return pair_tokens(self.iou_token, self.mask_tokens)[torch.arange(len(self.scores)),
                                                              self.chosen]


def pair_tokens(iou_token: torch.Tensor, mask_tokens: torch.Tensor) -> torch.Tensor:
    """[IoU token ; mask token j] for every mask j, (B, 3, 2D): each mask with its own token."""
    if iou_token.ndim != 2 or mask_tokens.ndim != 3 or mask_tokens.shape[0] != iou_token.shape[0] \
            or mask_tokens.shape[2] != iou_token.shape[1]:
        raise ValueError(f"expected iou_token (B, D) and mask_tokens (B, n_masks, D), got "
                         f"{tuple(iou_token.shape)} and {tuple(mask_tokens.shape)}.")
    return torch.cat([iou_token[:, None].expand_as(mask_tokens), mask_tokens], dim=-1)


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    starts = range(0, n, batch_size)
    return tqdm(starts, desc=desc, disable=not progress, total=math.ceil(n / batch_size))


@torch.inference_mode()
def predict(segmenter: PromptableSegmenter, data: AmbiguousShapes, points: torch.Tensor, *,
            batch_size: int = 256, device=None, progress: bool = True,
            desc: str = "segment") -> Predictions:
    """Run ``segmenter`` on every instance of ``data`` with click ``points`` (M, K, 2)."""
    if len(points) != len(data):
        raise ValueError(f"got {len(points)} prompts for {len(data)} instances: give one prompt "
                         "per instance (see companion.data.prompts.sample_prompts).")
    device = resolve_device(device)
    segmenter.eval().to(device)
    parts = []
    for s in _batches(len(data), batch_size, progress, desc):
        idx = slice(s, s + batch_size)
        images = data.images[data.image_index[idx]].to(device)
        out = segmenter(images, points[idx].to(device))
        iou = mask_iou(out.mask_logits, data.masks[idx, None].to(device))
        parts.append((out.scores, iou, out.iou_token, out.mask_tokens))
    return Predictions(*(torch.cat([p[k] for p in parts]).cpu() for k in range(4)))


@dataclass(frozen=True)
class USAMRecords:
    """Every size's predictions on the centre click and on the dense prompt, for every instance."""

    sizes: tuple[str, ...]               # ordered from the smallest to the largest model
    single: dict[str, Predictions]
    dense: dict[str, Predictions]

    def __len__(self) -> int:
        return len(self.single[self.sizes[0]].scores)

    @property
    def target_names(self) -> tuple[str, ...]:
        return (*(f"iou_{s}" for s in self.sizes), "iou_sam", "iou_dense", *GAPS)

    def targets(self, size: str) -> dict[str, torch.Tensor]:
        """The paper's targets (unshifted) for the rows that carry ``size``'s tokens."""
        self._check_size(size)
        own, dense = self.single[size], self.dense[size]
        small, large = self.single[self.sizes[0]], self.single[self.sizes[-1]]
        out = {f"iou_{s}": self.single[s].iou_best for s in self.sizes}
        out.update(iou_sam=own.iou_sam, iou_dense=dense.iou_best,
                   model_gap=large.iou_best - small.iou_best,
                   prompt_gap=dense.iou_best - own.iou_best,
                   task_gap=own.iou_best - own.iou_sam)
        return out

    def training_rows(self, sizes: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs l (R, 2D) and encoded targets (R, n_targets), one row per (instance, size)."""
        xs, ys = [], []
        for size in sizes or self.sizes:
            xs.append(self.single[size].features())
            ys.append(encode_targets(self.targets(size), self.target_names))
        return torch.cat(xs), torch.cat(ys)

    def subset(self, index) -> "USAMRecords":
        """The records of the instances in ``index``."""
        index = torch.as_tensor(list(index) if isinstance(index, range) else index, dtype=torch.long)

        def take(p: Predictions) -> Predictions:
            return Predictions(p.scores[index], p.ious[index], p.iou_token[index],
                               p.mask_tokens[index])

        return USAMRecords(self.sizes, {k: take(v) for k, v in self.single.items()},
                           {k: take(v) for k, v in self.dense.items()})

    def _check_size(self, size: str) -> None:
        if size not in self.sizes:
            raise ValueError(f"Unknown size {size!r}: these records hold {', '.join(self.sizes)}.")


def collect_records(segmenters: Mapping[str, PromptableSegmenter], data: AmbiguousShapes,
                    prompts: Prompts, *, batch_size: int = 256, device=None,
                    progress: bool = True) -> USAMRecords:
    """Run every segmenter (smallest first) on the centre click and on the dense prompt."""
    if len(prompts) != len(data):
        raise ValueError(f"got {len(prompts)} prompts for {len(data)} instances: sample them from "
                         "data.masks.")
    if len(segmenters) < 2:
        raise ValueError("USAM's model gap needs at least two segmenter sizes, ordered from the "
                         f"smallest to the largest; got {list(segmenters)}.")
    kw = dict(batch_size=batch_size, device=device, progress=progress)
    single = {k: predict(m, data, prompts.centre, desc=f"{k}: centre click", **kw)
              for k, m in segmenters.items()}
    dense = {k: predict(m, data, prompts.dense, desc=f"{k}: dense prompt", **kw)
             for k, m in segmenters.items()}
    return USAMRecords(tuple(segmenters), single, dense)


def encode_targets(targets: Mapping[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    """Stack targets as columns; gaps shifted by +0.5; all clipped to [0, 1]."""
    cols = [targets[n] + (GAP_SHIFT if n in GAPS else 0.0) for n in names]
    return torch.stack(cols, dim=1).clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------ heads

class USAMHeads(nn.Module):
    """One 3-layer MLP per target, evaluated together as batched matrix products.

    Head h computes σ(W₃ ReLU(W₂ ReLU(W₁ l + b₁) + b₂) + b₃) on l = [IoU token ; mask token].
    """

    def __init__(self, names: Sequence[str], token_dim: int, hidden: int | None = None):
        super().__init__()
        if not names:
            raise ValueError("USAMHeads needs at least one target name.")
        self.names = tuple(names)
        self.token_dim = int(token_dim)
        d_in = 2 * self.token_dim
        hidden = hidden or d_in
        dims = [(d_in, hidden), (hidden, hidden), (hidden, 1)]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in dims:  # nn.Linear's default initialisation, one slice per head
            bound = 1 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(len(names), fan_in, fan_out)
                                             .uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(len(names), 1, fan_out)
                                            .uniform_(-bound, bound)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 2D) inputs l → (B, n_heads) outputs in [0, 1] (gaps still shifted by +0.5)."""
        if features.ndim != 2 or features.shape[1] != 2 * self.token_dim:
            raise ValueError(f"expected features of shape (B, {2 * self.token_dim}) = [IoU token ; "
                             f"mask token], got {tuple(features.shape)}.")
        x = features[None].expand(len(self.names), -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = F.relu(x)
        return torch.sigmoid(x[..., 0]).T

    def predict(self, iou_token: torch.Tensor, mask_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoded predictions per target for every mask, each (B, 3); gaps back in [−0.5, 0.5]."""
        pairs = pair_tokens(iou_token, mask_tokens)
        out = self(pairs.flatten(0, 1)).unflatten(0, pairs.shape[:2])
        return {n: out[..., h] - (GAP_SHIFT if n in GAPS else 0.0) for h, n in enumerate(self.names)}

    def predict_chosen(self, predictions: Predictions) -> dict[str, torch.Tensor]:
        """Decoded predictions for the score-chosen mask of every instance, each (M,)."""
        with torch.inference_mode():
            out = self(predictions.features().to(self.weights[0].device)).cpu()
        return {n: out[:, h] - (GAP_SHIFT if n in GAPS else 0.0) for h, n in enumerate(self.names)}


def heads_loss(model: USAMHeads, batch) -> tuple[torch.Tensor, dict[str, float]]:
    """The paper's loss: MSE between sigmoid outputs and encoded targets, summed over heads."""
    x, y = batch
    err = (model(x) - y) ** 2
    per_head = err.mean(0)
    return per_head.sum(), {"mse": per_head.mean().item()}


def train_heads(records: USAMRecords, *, sizes: Sequence[str] | None = None,
                epochs: int = PAPER_SGD["epochs"], lr: float = PAPER_SGD["lr"],
                momentum: float = PAPER_SGD["momentum"],
                weight_decay: float = PAPER_SGD["weight_decay"],
                batch_size: int = PAPER_SGD["batch_size"], optimizer: str = "sgd", seed: int = 0,
                device=None, progress: bool = True) -> tuple[USAMHeads, History]:
    """Train all heads post hoc (segmenter frozen) on the rows of ``sizes`` (default: all)."""
    x, y = records.training_rows(sizes)
    torch.manual_seed(seed)
    heads = USAMHeads(records.target_names, x.shape[1] // 2)
    history = fit(heads, (x, y), epochs=epochs, loss=heads_loss, optimizer=optimizer, lr=lr,
                  momentum=momentum, weight_decay=weight_decay, batch_size=batch_size, seed=seed,
                  device=device, progress=progress, desc="USAM heads")
    return heads.eval(), history


# --------------------------------------------------------------- Monte-Carlo entropy baselines

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
    best = mask_iou(logits, masks[:, None]).argmax(1)
    return logits[torch.arange(len(logits)), best].sigmoid()


def _mixture(logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
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
    ``H_Θ`` H(mean over all sizes of P_best) (model); ``H_Y`` H of the score-weighted mixture
    over every run made here (predictive). "Best" is chosen with the ground truth, as in the paper.
    """
    if size not in segmenters:
        raise ValueError(f"Unknown size {size!r}: choose one of {', '.join(segmenters)}.")
    device = resolve_device(device)
    gen = torch.Generator().manual_seed(seed)
    model = segmenters[size].eval().to(device)
    n_points = prompts.points.shape[1]
    out: dict[str, list[torch.Tensor]] = {k: [] for k in
                                          ("H_Std", "H_A", "H_XP", "H_T", "H_Θ", "H_Y")}
    for s in _batches(len(data), batch_size, progress, f"MC entropies ({size})"):
        idx = slice(s, s + batch_size)
        images = data.images[data.image_index[idx]].to(device)
        masks = data.masks[idx].to(device)
        centre = prompts.centre[idx].to(device)
        mixtures = []
        # model: every size on the clean image and the centre click
        best_theta = []
        for name, m in segmenters.items():
            o = m.eval().to(device)(images, centre)
            best_theta.append(_best(o.mask_logits, masks))
            if name != size:  # the clean run of ``size`` joins the mixture below
                mixtures.append(_mixture(o.mask_logits, o.scores))
        # image: augmentations with the centre click (identity first gives H_Std and H_A)
        embedding, best_t = None, []
        for name, aug in AUGMENTATIONS.items():
            emb = model.embed_image(aug(images, gen))
            o = model.decode(emb, centre)
            best_t.append(_best(o.mask_logits, masks))
            mixtures.append(_mixture(o.mask_logits, o.scores))
            if name == "identity":
                embedding = emb
                out["H_Std"].append(mask_entropy(best_t[-1]))
                out["H_A"].append(mask_entropy(mixtures[-1]))
        # prompt: each click of the dense set alone, reusing the image embedding
        best_p = []
        for j in range(n_points):
            o = model.decode(embedding, prompts.single(j)[idx].to(device))
            best_p.append(_best(o.mask_logits, masks))
            mixtures.append(_mixture(o.mask_logits, o.scores))
        out["H_XP"].append(mask_entropy(torch.stack(best_p).mean(0)))
        out["H_T"].append(mask_entropy(torch.stack(best_t).mean(0)))
        out["H_Θ"].append(mask_entropy(torch.stack(best_theta).mean(0)))
        out["H_Y"].append(mask_entropy(torch.stack(mixtures).mean(0)))
    return {k: torch.cat(v).cpu() for k, v in out.items()}


# ------------------------------------------------------------------------------- evaluation

PANELS = ("model", "prompt", "task", "segmentation")


@dataclass(frozen=True)
class CorrectionResult:
    """Correction curves and relative AUCs per panel and method (the oracle included)."""

    curves: dict[str, dict[str, CorrectionCurve]]
    relative_auc: dict[str, dict[str, float]]

    def table(self) -> str:
        """Relative AUC (%) as a markdown table: methods as rows, panels as columns."""
        panels = list(self.relative_auc)
        methods = [m for m in next(iter(self.relative_auc.values())) if m != "oracle"]
        rows = ["| method | " + " | ".join(panels) + " |", "|---" * (len(panels) + 1) + "|"]
        for m in methods:
            cells = [f"{100 * self.relative_auc[p][m]:.1f}" if m in self.relative_auc[p] else "–"
                     for p in panels]
            rows.append(f"| {m} | " + " | ".join(cells) + " |")
        return "\n".join(rows)


def evaluate_corrections(records: USAMRecords, heads: USAMHeads,
                         baselines: Mapping[str, torch.Tensor], size: str, *,
                         ratios: Sequence[float] | None = None, seed: int = 0) -> CorrectionResult:
    """The paper's four correction panels for segmenter ``size`` (Fig. 5).

    model: IoU_θ → IoU of the largest size; prompt: IoU_θ → IoU_xP*; task: IoU_SAM → IoU_θ;
    segmentation: IoU_θ → 1 (the ground truth). Rankings: USAM's head for the panel (for the
    model panel of a size other than the smallest, the difference of two IoU heads), the
    segmenter's own score (1 − s), every baseline entropy, and a random order. A panel where the
    refinement never helps (for the largest size, the model panel) is left out.
    """
    records._check_size(size)
    own = records.single[size]
    pred = heads.predict_chosen(own)
    n = len(own.scores)
    largest = records.sizes[-1]
    # Δ*_Θ is trained as IoU_large − IoU_smallest; for another size use Δ_Θ = USAM_L − USAM_θ
    model_gap = pred["model_gap"] if size == records.sizes[0] else \
        pred[f"iou_{largest}"] - pred[f"iou_{size}"]
    panels = {
        "model": (own.iou_best, records.single[largest].iou_best, model_gap),
        "prompt": (own.iou_best, records.dense[size].iou_best, pred["prompt_gap"]),
        "task": (own.iou_sam, own.iou_best, pred["task_gap"]),
        "segmentation": (own.iou_best, torch.ones(n), 1 - pred[f"iou_{size}"]),
    }
    random = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    curves, rel = {}, {}
    for panel, (current, refined, usam) in panels.items():
        oracle = oracle_curve(current, refined, ratios)
        if oracle.miou[-1] <= oracle.miou[0]:
            continue
        rankings = {"USAM": usam, "SamScore": 1 - own.sam_score, **baselines, "random": random}
        curves[panel] = {"oracle": oracle, **{k: correction_curve(current, refined, v, ratios)
                                              for k, v in rankings.items()}}
        rel[panel] = {k: relative_auc(c, oracle) for k, c in curves[panel].items()}
    return CorrectionResult(curves, rel)


@torch.inference_mode()
def method_costs(segmenters: Mapping[str, PromptableSegmenter], heads: USAMHeads,
                 image: torch.Tensor, points: torch.Tensor, size: str, *, repeats: int = 20,
                 device=None) -> dict[str, float]:
    """Seconds per image of the segmenter alone and with each uncertainty method (the paper's Tab. 7).

    "USAM heads alone" times the heads on tokens already computed: the extra cost of USAM.

    ``image`` (3, S, S) and ``points`` (n_points, 2): the centre click first, the dense set after.
    """
    device = resolve_device(device)
    model = segmenters[size].eval().to(device)
    heads = heads.to(device)
    image, points = image[None].to(device), points.to(device)
    centre = points[None, :1]
    gen = torch.Generator().manual_seed(0)

    def forward():
        return model(image, centre)

    def with_entropy():
        o = forward()
        return mask_entropy(_mixture(o.mask_logits, o.scores))

    def with_augmentations():
        return [mask_entropy(_mixture(*(lambda o: (o.mask_logits, o.scores))(
            model(aug(image, gen), centre)))) for aug in AUGMENTATIONS.values()]

    def with_prompts():
        emb = model.embed_image(image).expand(len(points), -1, -1, -1)
        o = model.decode(emb, points[:, None])
        return mask_entropy(_mixture(o.mask_logits, o.scores).mean(0, keepdim=True))

    def with_sizes():
        return [mask_entropy(_mixture(o.mask_logits, o.scores)) for o in
                (m.eval().to(device)(image, centre) for m in segmenters.values())]

    tokens = forward()

    def heads_alone():
        return heads(pair_tokens(tokens.iou_token, tokens.mask_tokens).flatten(0, 1))

    def with_usam():
        o = forward()
        return heads(pair_tokens(o.iou_token, o.mask_tokens).flatten(0, 1))

    calls = {"segmenter": forward, "+ entropy H_A": with_entropy,
             f"+ |T|={len(AUGMENTATIONS)} augmentations": with_augmentations,
             f"+ |X_P|={len(points)} prompts": with_prompts,
             f"+ |Θ|={len(segmenters)} sizes": with_sizes, "+ USAM heads": with_usam,
             "USAM heads alone": heads_alone}
    timing = time_interleaved(calls, repeats=repeats, progress=False)
    return {name: t.median for name, t in timing.items()}
