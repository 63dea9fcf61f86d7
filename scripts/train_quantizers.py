#!/usr/bin/env python
"""Train the shipped descriptor quantizers (xfeat, sift, aliked) on the Strecha mapping images.

    python scripts/train_quantizers.py [--features xfeat sift aliked] [--data DIR ...]

Writes ``scenesqueezer_core/weights/quantizer_<features>.safetensors``, a JSON report per feature
type beside it, and ``scenesqueezer_core/weights/MODEL_CARD.md`` with the validation numbers
(held-out query pairs, never seen in training).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scenesqueezer_core.atomic import atomic_write_text  # noqa: E402
from scenesqueezer_core.features.weights import WEIGHTS_DIR  # noqa: E402
from scenesqueezer_core.compression.train_quantizer import train_from_datasets  # noqa: E402

DEFAULT_DATA = [str(REPO.parent / "shared" / "data" / n) for n in ("strecha_castle_p30", "strecha_fountain_p11")]
MAX_DESCRIPTORS = 20000
SEED = 0


def model_card(reports: dict[str, dict], command: str) -> str:
    lines = [
        "# Shipped DSQ descriptor quantizers",
        "",
        "Auto-encoders with a Differentiable Soft Quantization bottleneck (seed section A; Gong et al.,",
        "ICCV 2019): descriptor -> residual MLP encoder -> sigmoid(Linear) - 0.5 -> DSQ, 8 bits -> one",
        "uint8 per code dimension -> inverse sigmoid -> residual MLP decoder -> L2-normalized descriptor.",
        "Linear paths start as a scaled random rotation and its inverse (a companding quantizer), the",
        "MLPs refine it. Loss: cosine reconstruction + similarity distillation (raw-vs-decoded",
        "similarities over a batch equal raw-vs-raw, and the same for same-point pairs from ratio-tested",
        "mutual NN between neighbouring mapping frames). Weights: safetensors, config as JSON metadata,",
        "sha256 content hash of the tensors (`DescriptorQuantizer.content_hash`).",
        "",
        "Data: Strecha castle-P30 and fountain-P11 (../shared/data), `mapping` split only for training",
        f"(at most {MAX_DESCRIPTORS} descriptors, seed {SEED}); validation on consecutive pairs of the",
        "`query` split (7 pairs, images never seen in training), features from",
        "`scenesqueezer_core.features` with each setup's conf.",
        "",
        f"Command: `{command}`",
        "",
        "Validation (means over the held-out pairs). *map agreement*: fraction of the raw/raw mutual-NN",
        "matches found again when the second image's descriptors are encoded + decoded (raw query vs",
        "quantized map, the localizer's case); *both*: both images quantized; *matcher*: the same with the",
        "setup's own matcher (MNN with its thresholds, or LightGlue for aliked); *uniform8*: reference",
        "without learning, every raw dimension rounded to 8 bits on [-1, 1] (same bytes).",
        "",
        "| features | dim -> bytes | weights | train desc. | cosine | map agreement | both | matcher agreement | uniform8 map agreement | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rep in reports.items():
        mean = rep["validation"]["mean"]
        conf = rep["model_conf"]
        lines.append(
            f"| {name} | {conf['in_dim']} -> {conf['code_dim']} | {rep['weights_bytes'] // 1024} KiB | "
            f"{rep['train_descriptors']} | {mean['cosine']:.4f} | {mean['mnn_agreement_map']:.4f} | "
            f"{mean['mnn_agreement_both']:.4f} | {mean['matcher_agreement_map']:.4f} ({rep['validation']['matcher']}) | "
            f"{mean['uniform8_mnn_agreement_map']:.4f} | {rep['training_history']['seconds']:.0f} |"
        )
    lines += ["", "Content hashes:", ""]
    lines += [f"- `quantizer_{name}.safetensors`: `{rep['content_hash']}`" for name, rep in reports.items()]
    lines += ["", "Per-pair numbers and the full training config: `quantizer_<features>.json`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", nargs="+", default=["xfeat", "sift", "aliked"])
    parser.add_argument("--data", nargs="+", default=DEFAULT_DATA)
    parser.add_argument("--cache-dir", default=str(REPO / "outputs" / "qcache"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args(argv)
    reports = {}
    for path in WEIGHTS_DIR.glob("quantizer_*.json"):  # keep the card complete when training a subset
        rep = json.loads(path.read_text())
        reports[rep["features"]] = rep
    for setup in args.features:
        conf = {"num_threads": args.threads}
        if args.epochs:
            conf["epochs"] = args.epochs
        model, report = train_from_datasets(setup, args.data, conf, args.cache_dir, MAX_DESCRIPTORS, SEED)
        model.to_safetensors(WEIGHTS_DIR / f"quantizer_{report['features']}.safetensors")
        atomic_write_text(WEIGHTS_DIR / f"quantizer_{report['features']}.json", json.dumps(report, indent=1, default=str) + "\n")
        reports[report["features"]] = report
        print(setup, json.dumps(report["validation"]["mean"]), flush=True)
    command = "python scripts/train_quantizers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    atomic_write_text(WEIGHTS_DIR / "MODEL_CARD.md", model_card(dict(sorted(reports.items())), command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
