"""Quality experiment of issue 8: converted + adapted SSDlite vs the naive resolution knob.

No pretrained weights can be downloaded here, so a *non-throttleable* torchvision SSDlite320 is
trained briefly on the synthetic scenes as a stand-in for pretrained weights (``train``). It is then
converted and adapted with the normal CLIs (see docs/convert.md), and ``evaluate`` reports per-level
mAP@0.5 against the scenes' real ground truth and the latency of each operating point, measured in
one run beside

- the native throttleable detector (models/detector.pt), and
- the naive knob: the original SSDlite at lower input resolutions.

    python -m tnn_ros.bench.convert_quality train --minutes 15 -o /tmp/q/ssd_synthetic.pth
    python -m tnn_ros.bench.convert_quality evaluate --converted A.pt [B.pt ...] --original W.pth
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ..data.scenes import SyntheticDetectionDataset
from ..sim.scenes import CLASSES

ARCH = "ssdlite320_mobilenet_v3_large"
CATEGORIES = ["__background__", *CLASSES]
VAL_SEED = 424242
TRAIN_SEED = 7


def _targets(boxes, labels) -> list[dict]:
    return [{"boxes": b, "labels": c.long() + 1} for b, c in zip(boxes, labels)]  # 0 is background


def train(minutes: float, output: str, batch_size: int = 8, lr: float = 0.01, seed: int = 0) -> None:
    """Train the non-throttleable SSDlite on synthetic scenes for ``minutes`` of wall time."""
    from ..data.scenes import collate_detections
    from ..models.converted import build_original

    torch.manual_seed(seed)
    model = build_original(ARCH, len(CATEGORIES)).train()
    dataset = SyntheticDetectionDataset(100_000, 320, 240, seed=TRAIN_SEED)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate_detections,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=4e-5)
    deadline = time.monotonic() + minutes * 60
    start, step = time.monotonic(), 0
    for images, (boxes, labels) in loader:
        warm = min(1.0, (step + 1) / 100)
        for group in optimizer.param_groups:
            group["lr"] = lr * warm
        losses = model(list(images), _targets(boxes, labels))
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        step += 1
        if step % 20 == 0:
            elapsed = time.monotonic() - start
            print(f"step {step} loss {float(loss.detach()):.3f} ({elapsed:.0f}s)", flush=True)
        if step % 100 == 0 or time.monotonic() > deadline:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), output + ".tmp")
            Path(output + ".tmp").replace(output)
        if time.monotonic() > deadline:
            break
    print(f"trained {step} steps ({batch_size} images each) in {time.monotonic() - start:.0f}s -> {output}")


@torch.no_grad()
def _map50(predict, dataset) -> float:
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(
        iou_thresholds=[0.5], box_format="xyxy", max_detection_thresholds=[1, 10, 300]
    )
    metric.warn_on_many_detections = False
    for i in range(len(dataset)):
        image, target = dataset[i]
        det = predict(image)
        metric.update([det], [{"boxes": target["boxes"], "labels": target["labels"].long()}])
    return float(metric.compute()["map_50"])


def _median_ms(run, example, repeats: int) -> float:
    import statistics

    run(example)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(example)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


@torch.no_grad()
def evaluate(
    converted: list[str], original_weights: str, num_images: int, repeats: int, resolutions: list[int]
) -> dict:
    """Per-level mAP@0.5 vs ground truth + latency for every compared model, in one run."""
    import copy

    from ..models import load_detector
    from ..models.converted import build_original, load_original_weights
    from ..models.detector import decode

    dataset = SyntheticDetectionDataset(num_images, 320, 240, seed=VAL_SEED)
    example = dataset[0][0]
    result = {"images": num_images, "seed": VAL_SEED, "threads": torch.get_num_threads(), "rows": []}

    original = build_original(ARCH, len(CATEGORIES))
    load_original_weights(original, original_weights)
    original.eval()

    def shift(det):  # torchvision labels count the background; ground truth does not
        keep = det["labels"] > 0
        return {"boxes": det["boxes"][keep], "scores": det["scores"][keep], "labels": det["labels"][keep] - 1}

    for size in resolutions:
        net = copy.deepcopy(original)
        net.transform.fixed_size = (size, size)
        net.transform.min_size = (size,)
        net.transform.max_size = size
        result["rows"].append(
            {
                "model": "original SSDlite (naive resolution knob)",
                "setting": f"{size}x{size}",
                "map50": _map50(lambda im, n=net: shift(n([im])[0]), dataset),
                "latency_ms": _median_ms(lambda x, n=net: n([x]), example, repeats),
            }
        )
        print(result["rows"][-1], flush=True)
    for path in converted:
        model = load_detector(path)
        for level in range(model.num_levels):
            model.set_level(level)
            result["rows"].append(
                {
                    "model": f"converted {Path(path).name}",
                    "setting": f"level {level}",
                    "map50": _map50(lambda im, m=model: shift(m(im[None])[0]), dataset),
                    "latency_ms": _median_ms(lambda x, m=model: m(x[None]), example, repeats),
                }
            )
            print(result["rows"][-1], flush=True)
    native = load_detector(None)
    for level in range(native.num_levels):
        native.set_level(level)

        def predict(image, m=native):
            boxes, scores, labels = decode(*m(image[None]), 0.01)[0]
            return {"boxes": boxes, "scores": scores, "labels": labels}

        result["rows"].append(
            {
                "model": "native throttleable detector (models/detector.pt)",
                "setting": f"level {level}",
                "map50": _map50(predict, dataset),
                "latency_ms": _median_ms(lambda x, m=native: m(x[None]), example, repeats),
            }
        )
        print(result["rows"][-1], flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tnn_ros.bench.convert_quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the non-throttleable SSDlite stand-in")
    t.add_argument("--minutes", type=float, default=15.0)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=0.01)
    t.add_argument("-o", "--output", required=True)
    e = sub.add_parser("evaluate", help="per-level mAP@0.5 vs ground truth + latency, one run")
    e.add_argument("--converted", nargs="+", required=True)
    e.add_argument("--original", required=True, help="the stand-in's weights file")
    e.add_argument("--images", type=int, default=64)
    e.add_argument("--repeats", type=int, default=5)
    e.add_argument("--resolutions", type=int, nargs="+", default=[320, 256, 224, 192, 160])
    e.add_argument("--json", default=None)
    for p in (t, e):
        p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.command == "train":
        train(args.minutes, args.output, args.batch_size, args.lr)
        return 0
    result = evaluate(args.converted, args.original, args.images, args.repeats, args.resolutions)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
