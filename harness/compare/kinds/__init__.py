"""One judge per kind of output, for results files and in-memory arrays alike.

* ``embedding``: float vectors (elements, cosines, top-k retrieval);
* ``quantized``: int8/uint8/binary/ubinary vectors (buckets moved, bits flipped, top-k by quantized scores);
* ``rerank``: cross-encoder scores (elements, each query's order beyond ties).

Each returns a ``ModelVerdict``: checks, metrics, offenders, ``min_passing`` and the ``evidence`` messages quote.
Bi-encoders are fed by a pair source (``source.FilePair`` streams two files, ``source.ArrayPair`` holds two
arrays); rerank takes aligned arrays, which files provide through ``ResultsFile.rerank``.
"""

from __future__ import annotations

from harness.compare.kinds.embedding import judge_embeddings
from harness.compare.kinds.quantized import file_precision, judge_quantized
from harness.compare.kinds.rerank import judge_rerank, judge_rerank_files
from harness.compare.kinds.source import ArrayPair, EmbeddingPair, FilePair

__all__ = ["ArrayPair", "EmbeddingPair", "FilePair", "file_precision", "judge_embeddings", "judge_quantized",
           "judge_rerank", "judge_rerank_files"]
