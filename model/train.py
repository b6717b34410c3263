"""The `train` stage: fit the CNN, save it to the BentoML store and export it for DVC."""

import argparse
import csv
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import torch
from torch import nn

from model import classifier as store
from model.dataset import PreparedData, Split, load_prepared
from model.network import Architecture, CelestialNet
from model.params import load_params
from model.preprocess import to_tensor_batch

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")


@dataclass(frozen=True)
class TrainConfig:
    """The training parameters of `params.yaml`."""

    seed: int
    lr: float
    epochs: int
    batch_size: int
    conv_size: int
    dense_size: int
    output_classes: int

    @classmethod
    def from_params(cls, train: dict[str, Any], prepare: dict[str, Any]) -> "TrainConfig":
        """Build the configuration from the `train` and `prepare` sections."""
        return cls(
            seed=int(train["seed"]),
            lr=float(train["lr"]),
            epochs=int(train["epochs"]),
            batch_size=int(prepare["batch_size"]),
            conv_size=int(train["conv_size"]),
            dense_size=int(train["dense_size"]),
            output_classes=int(train["output_classes"]),
        )


def pick_device() -> torch.device:
    """Return CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Make a CPU run repeatable for a seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _tensors(split: Split, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(to_tensor_batch(split.pixels)).to(device)
    return images, torch.from_numpy(split.labels).to(device)


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip and rotate by quarter turns: a body has no up or left."""
    flips = torch.rand(len(batch), generator=generator) < 0.5
    batch = torch.where(flips.to(batch.device)[:, None, None, None], batch.flip(3), batch)
    turns = int(torch.randint(0, 4, (1,), generator=generator))
    return torch.rot90(batch, turns, dims=(2, 3))


def evaluate_loss(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int
) -> tuple[float, float]:
    """Return mean cross-entropy and accuracy on a data set."""
    net.eval()
    loss, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            logits = net(images[start : start + batch])
            target = labels[start : start + batch]
            loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(1) == target).sum())
    return loss / len(images), correct / len(images)


def _train_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    data: tuple[torch.Tensor, torch.Tensor],
    batch: int,
    generator: torch.Generator,
) -> tuple[float, float]:
    images, labels = data
    net.train()
    order = torch.randperm(len(images), generator=generator).to(images.device)
    loss_sum, correct = 0.0, 0
    for start in range(0, len(images), batch):
        index = order[start : start + batch]
        inputs = _augment(images[index], generator)
        logits = net(inputs)
        loss = nn.functional.cross_entropy(logits, labels[index])
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
        loss_sum += float(loss.detach()) * len(index)
        correct += int((logits.argmax(1) == labels[index]).sum())
    return loss_sum / len(images), correct / len(images)


def fit(
    data: PreparedData, config: TrainConfig, device: torch.device
) -> tuple[CelestialNet, list[dict[str, float]]]:
    """Train the network and return it with its per-epoch history."""
    if config.output_classes != len(data.classes):
        raise ValueError(
            f"train.output_classes is {config.output_classes}"
            f" but the data set has {len(data.classes)} classes"
        )
    seed_everything(config.seed)
    arch = Architecture(
        data.preprocessing.channels, config.conv_size, config.dense_size, config.output_classes
    )
    net = CelestialNet(arch).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.lr,
        total_steps=config.epochs * -(-len(data.train.labels) // config.batch_size),
    )
    generator = torch.Generator().manual_seed(config.seed)
    train, val = _tensors(data.train, device), _tensors(data.val, device)
    history = []
    for epoch in range(1, config.epochs + 1):
        train_loss, train_acc = _train_epoch(net, optimizer, schedule, train, config.batch_size, generator)
        val_loss, val_acc = evaluate_loss(net, *val, config.batch_size)
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
            }
        )
        print(
            f"epoch {epoch:>3}: loss {train_loss:.4f} acc {train_acc:.3f}"
            f" | val loss {val_loss:.4f} acc {val_acc:.3f}"
        )
    return net.cpu().eval(), history


def write_history(history: list[dict[str, float]], path: Path) -> None:
    """Write the per-epoch history as CSV, the DVC plot file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})


def export(tag: bentoml.Tag, path: Path) -> None:
    """Export the stored model to a `.bentomodel` file, replacing an older one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    bentoml.models.export_model(tag, str(path.resolve()))


def main() -> None:
    """Run the stage with `params.yaml`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--model", type=Path, default=Path("model/classifier.bentomodel"))
    parser.add_argument("--history", type=Path, default=Path("evaluation/history.csv"))
    args = parser.parse_args()
    config = TrainConfig.from_params(load_params("train"), load_params("prepare"))
    data = load_prepared(args.prepared)
    device = pick_device()
    started = time.perf_counter()
    net, history = fit(data, config, device)
    trained = store.Classifier(net, net.arch, data.classes, data.preprocessing)
    facts = {"device": str(device), "train_seconds": round(time.perf_counter() - started, 2)}
    tag = store.save(trained, facts)
    write_history(history, args.history)
    export(tag, args.model)
    print(f"saved {tag} and exported it to {args.model}")


if __name__ == "__main__":
    main()
