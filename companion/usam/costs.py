"""UncertainSAM's costs: seconds per image of the segmenter alone and with each method."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..metrics.efficiency import time_interleaved
from ..metrics.uncertainty import mask_entropy
from ..runtime import resolve_device
from .baselines import AUGMENTATIONS, mixture
from .heads import USAMHeads
from .records import pair_tokens
from .segmenter import PromptableSegmenter


@torch.inference_mode()
def method_costs(segmenters: Mapping[str, PromptableSegmenter], heads: USAMHeads,
                 image: torch.Tensor, points: torch.Tensor, size: str, *, repeats: int = 20,
                 device=None) -> dict[str, float]:
    """Seconds per image of the segmenter alone and with each uncertainty method (the paper's Tab. 7).

    "USAM heads alone" times the heads on tokens already computed: the extra cost of USAM.
    "+ H_Y" runs every size on every augmentation, decoding the clicks as one batch.

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
        return mask_entropy(mixture(o.mask_logits, o.scores))

    def with_augmentations():
        return [mask_entropy(mixture(*(lambda o: (o.mask_logits, o.scores))(
            model(aug(image, gen), centre)))) for aug in AUGMENTATIONS.values()]

    def with_prompts():
        emb = model.embed_image(image).expand(len(points), -1, -1, -1)
        o = model.decode(emb, points[:, None])
        return mask_entropy(mixture(o.mask_logits, o.scores).mean(0, keepdim=True))

    def with_sizes():
        return [mask_entropy(mixture(o.mask_logits, o.scores)) for o in
                (m.eval().to(device)(image, centre) for m in segmenters.values())]

    def with_all_runs():  # H_Y: every size × augmentation × single click
        mixtures = []
        for m in segmenters.values():
            for aug in AUGMENTATIONS.values():
                emb = m.eval().to(device).embed_image(aug(image, gen))
                o = m.decode(emb.expand(len(points), -1, -1, -1), points[:, None])
                mixtures.append(mixture(o.mask_logits, o.scores))
        return mask_entropy(torch.cat(mixtures).mean(0, keepdim=True))

    tokens = forward()

    def heads_alone():
        return heads(pair_tokens(tokens.iou_token, tokens.mask_tokens).flatten(0, 1))

    def with_usam():
        o = forward()
        return heads(pair_tokens(o.iou_token, o.mask_tokens).flatten(0, 1))

    calls = {"segmenter": forward, "+ entropy H_A": with_entropy,
             f"+ |T|={len(AUGMENTATIONS)} augmentations": with_augmentations,
             f"+ |X_P|={len(points)} prompts": with_prompts,
             f"+ |Θ|={len(segmenters)} sizes": with_sizes,
             f"+ H_Y ({len(segmenters)}×{len(AUGMENTATIONS)}×{len(points)} runs)": with_all_runs,
             "+ USAM heads": with_usam,
             "USAM heads alone": heads_alone}
    timing = time_interleaved(calls, repeats=repeats, progress=False, device=device)
    return {name: t.median for name, t in timing.items()}
