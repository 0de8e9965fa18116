"""One judge per kind of output (``embedding``: float and quantized vectors; ``rerank``), for results files and
arrays alike."""

from __future__ import annotations

from harness.compare.kinds.embedding import judge_embeddings
from harness.compare.kinds.rerank import judge_rerank, judge_rerank_files
from harness.compare.kinds.source import ArrayPair, EmbeddingPair, FilePair

__all__ = ["ArrayPair", "EmbeddingPair", "FilePair", "judge_embeddings",
           "judge_rerank", "judge_rerank_files"]
