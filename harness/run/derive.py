"""Build a real-size cross-encoder offline: a bi-encoder's BERT weights under a seeded classification head.

No trained reranker can be fetched here, yet reranking must run on the real compute path in every cell: its
scores test numerical stability, not relevance. numpy and safetensors only, so every environment builds
byte-identical files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict

from harness.fsio import atomic_directory, write_text

__all__ = ["build_derived_cross_encoder", "DERIVED_SEED"]

DERIVED_SEED = 20261123
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _classification_config(base_config: Dict[str, Any]) -> Dict[str, Any]:
    config = {k: v for k, v in base_config.items() if k not in ("_name_or_path", "gradient_checkpointing")}
    config.update(
        architectures=["BertForSequenceClassification"],
        num_labels=1,
        id2label={"0": "LABEL_0"},
        label2id={"LABEL_0": 0},
        torch_dtype="float32",
        harness_note="derived by embedding-harness: encoder weights of the base model + seeded classifier; "
        "scores test numerical stability, not relevance",
    )
    return config


def build_derived_cross_encoder(base_dir: Path, out_dir: Path, seed: int = DERIVED_SEED) -> Path:
    """Write the derived cross-encoder to ``out_dir`` (no-op when it already holds weights)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    out_dir = Path(out_dir)
    if (out_dir / "model.safetensors").is_file():
        return out_dir
    base = load_file(str(Path(base_dir) / "model.safetensors"))
    base_config = json.loads((Path(base_dir) / "config.json").read_text(encoding="utf-8"))
    hidden = int(base_config["hidden_size"])
    rng = np.random.default_rng(seed)
    tensors = {f"bert.{name}": np.ascontiguousarray(value) for name, value in base.items()}
    # Scale so that logits spread over a few units: sigmoid scores then differ by >1e-3 between candidates.
    tensors["classifier.weight"] = (rng.standard_normal((1, hidden)) * (4.0 / np.sqrt(hidden))).astype(np.float32)
    tensors["classifier.bias"] = np.zeros((1,), dtype=np.float32)
    with atomic_directory(out_dir) as tmp:  # built whole: a concurrent build of the same model is byte-identical
        save_file({k: tensors[k] for k in sorted(tensors)}, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = _classification_config(base_config)
        write_text(tmp / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name in _TOKENIZER_FILES:
            if (Path(base_dir) / name).is_file():
                shutil.copyfile(Path(base_dir) / name, tmp / name)
    return out_dir
