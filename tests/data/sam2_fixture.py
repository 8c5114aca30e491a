"""Tiny random SAM 2 models, saved where ``transformers`` looks for SAM 2.1 when offline.

``write_tiny_sam2_hub`` lays out a Hugging Face cache as the Hub leaves it
(``hub/models--facebook--sam2.1-hiera-tiny/{refs/main, snapshots/<rev>/…}``) with a random model
and its processor per size: with ``HF_HOME`` pointing there and ``HF_HUB_OFFLINE=1``, the
chapter's ``Sam2Tokens.from_pretrained("tiny")`` loads it without network.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

from companion.usam.sam2_hf import OFFICIAL_HEADS, SAM2_CHECKPOINTS

INPUT_SIZE = 128  # the models' square input (SAM 2.1: 1024)
TOKEN_DIM = 32    # the decoder's token width (SAM 2.1: 256, every size)
REVISION = "0" * 40
WIDTHS = {"tiny": 8, "small": 8, "base_plus": 16, "large": 16}  # the first Hiera stage's width
# a random model's masks cover the objects by the luck of its seed: with these the large model's
# best mask beats the tiny one's on most COCO-fixture instances, as SAM 2.1 large's does, so
# that the model panel (left out where the larger model never helps) is computed
SEEDS = {"tiny": 0, "small": 1, "base_plus": 3, "large": 2}


def tiny_sam2_config(width: int = 8) -> transformers.Sam2Config:
    """The smallest SAM 2 that still runs: four Hiera stages from ``width`` channels, 128-pixel input."""
    stages = [width * 2 ** i for i in range(4)]
    backbone = Sam2HieraDetConfig(
        hidden_size=width, embed_dim_per_stage=stages, num_attention_heads_per_stage=[1, 1, 2, 2],
        blocks_per_stage=[1, 2, 2, 1], window_size_per_stage=[4, 4, 4, 2],
        global_attention_blocks=[4], image_size=[INPUT_SIZE, INPUT_SIZE],
        window_positional_embedding_background_size=[4, 4])
    side = INPUT_SIZE // 4
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=stages[::-1],
                              backbone_feature_sizes=[[side, side], [side // 2, side // 2],
                                                      [side // 4, side // 4]],
                              fpn_hidden_size=TOKEN_DIM)
    return transformers.Sam2Config(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=TOKEN_DIM, image_size=INPUT_SIZE, patch_size=16),
        mask_decoder_config=dict(hidden_size=TOKEN_DIM, mlp_dim=64, num_attention_heads=2,
                                 iou_head_hidden_dim=TOKEN_DIM))


def tiny_sam2(width: int = 8, seed: int = 0) -> transformers.Sam2Model:
    """A randomly initialised tiny SAM 2 (seeded), each layer at PyTorch's default initialisation.

    transformers' own initialisation (normal, std 0.02) leaves the decoder's output tokens nearly
    equal and the mask logits near 1e-5: a test could not tell one token from another.
    """
    torch.manual_seed(seed)
    model = transformers.Sam2Model(tiny_sam2_config(width))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d,
                                   torch.nn.Embedding)):
                module.reset_parameters()
    return model.eval()


def tiny_sam2_processor() -> transformers.Sam2Processor:
    """SAM 2's processor for the tiny models' 128-pixel input (low-resolution masks of 32)."""
    image_processor = transformers.Sam2ImageProcessor(
        size={"height": INPUT_SIZE, "width": INPUT_SIZE},
        mask_size={"height": INPUT_SIZE // 4, "width": INPUT_SIZE // 4})
    return transformers.Sam2Processor(image_processor=image_processor, target_size=INPUT_SIZE)


def write_tiny_sam2_hub(hf_home: Path, sizes: tuple[str, ...] = ("tiny", "large")) -> Path:
    """A Hugging Face cache under ``hf_home`` holding a tiny random model per SAM 2.1 ``size``."""
    shown = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        for size in sizes:
            repo = hf_home / "hub" / ("models--" + SAM2_CHECKPOINTS[size].replace("/", "--"))
            snapshot = repo / "snapshots" / REVISION
            tiny_sam2(WIDTHS[size], seed=SEEDS[size]).save_pretrained(snapshot)
            tiny_sam2_processor().save_pretrained(snapshot)
            (repo / "refs").mkdir(parents=True, exist_ok=True)
            (repo / "refs" / "main").write_text(REVISION)
    finally:
        if shown:
            transformers.utils.logging.enable_progress_bar()
    return hf_home


def official_mlp_state(d_in: int, seed: int) -> dict:
    """A random state dict laid out like an official USAM MLP (MaskFormer style ``layers.i``)."""
    torch.manual_seed(seed)
    layers = torch.nn.ModuleList([torch.nn.Linear(d_in, d_in), torch.nn.Linear(d_in, d_in),
                                  torch.nn.Linear(d_in, 1)])
    return {f"layers.{k}": v for k, v in layers.state_dict().items()}


def write_official_mlps(folder: Path, token_dim: int = TOKEN_DIM) -> Path:
    """Random MLPs in the official repository's layout, ``<target>/model.pth`` for every target."""
    for k, name in enumerate(OFFICIAL_HEADS):
        (folder / name).mkdir(parents=True)
        torch.save(official_mlp_state(2 * token_dim, k), folder / name / "model.pth")
    return folder
