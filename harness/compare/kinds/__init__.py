"""One judge per kind of output (``embedding``, ``quantized``, ``rerank``), for results files and arrays alike."""

from __future__ import annotations

from harness.compare.kinds.embedding import judge_embeddings
from harness.compare.kinds.quantized import file_precision, judge_quantized
from harness.compare.kinds.rerank import judge_rerank, judge_rerank_files
from harness.compare.kinds.source import ArrayPair, EmbeddingPair, FilePair

__all__ = ["ArrayPair", "EmbeddingPair", "FilePair", "file_precision", "judge_embeddings", "judge_quantized",
           "judge_rerank", "judge_rerank_files"]
