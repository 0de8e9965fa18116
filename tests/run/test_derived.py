"""The derived real-size cross-encoder: built offline, deterministically, and loadable as a CrossEncoder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harness.config.registry import load_registry
from harness.run.derive import build_derived_cross_encoder
from harness.run.resolve import resolve_model_dir


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_derived_cross_encoder_is_byte_stable_and_scores(tmp_path: Path) -> None:
    registry = load_registry()
    base_dir, _ = resolve_model_dir(registry.models["all-MiniLM-L6-v2"])
    a = build_derived_cross_encoder(base_dir, tmp_path / "a")
    b = build_derived_cross_encoder(base_dir, tmp_path / "b")
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert _sha(a / name) == _sha(b / name)
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(a), device="cpu")
    scores = model.predict([("what is a cat", "a cat is a small animal"), ("what is a cat", "stock prices fell")])
    assert scores.shape == (2,) and abs(float(scores[0]) - float(scores[1])) > 1e-4
    assert model.model.config.num_hidden_layers == 6 and model.model.config.hidden_size == 384


def test_registry_names_the_derived_model_and_its_base() -> None:
    spec = load_registry().models["minilm-l6-derived-cross-encoder"]
    assert spec.source == "derived" and spec.base == "all-MiniLM-L6-v2" and "DERIVED" in spec.note
