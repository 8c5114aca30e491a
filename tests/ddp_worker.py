"""Run by test_train_ddp.py under ``torchrun``: trains a small classifier, saves each rank's result."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from companion.models import Classifier, create_backbone
from companion.train import fit


def maps_loss(model, batch):
    """Cross-entropy plus a small penalty on the feature maps, both from ``model.forward_all``."""
    x, y = batch
    logits, _, maps = model.forward_all(x)
    accuracy = (logits.argmax(1) == y).float().mean().item()
    return F.cross_entropy(logits, y) + 1e-3 * maps.mean(), {"accuracy": accuracy}


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of 16×16 noise images; class 1 has a bright upper half."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 2
    x = torch.rand(64, 1, 16, 16, generator=g) * 0.5
    x[y == 1, :, :8] += 0.5
    return x, y


def make_model() -> Classifier:
    torch.manual_seed(0)
    return Classifier(create_backbone("small_cnn", width=8, in_chans=1), num_classes=2)


def main(out: Path, epochs: int) -> None:
    x, y = make_data()
    model = make_model()
    history = fit(model, (x, y), epochs=epochs, loss=maps_loss, lr=0.05, batch_size=8, seed=1,
                  device="cpu", progress=False, checkpoint=out / "checkpoint.pt", val_data=(x, y))
    rank = dist.get_rank()
    torch.save({"state": model.state_dict(), "train_loss": list(history.train_loss),
                "train_accuracy": list(history.train_metrics["accuracy"]),
                "val_accuracy": list(history.val_metrics["accuracy"]),
                "world_size": dist.get_world_size()}, out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
