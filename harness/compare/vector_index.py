"""The "keep the index" scenario through a real FAISS index, configured like the user's own (or read from the
user's index file and id map: a JSON array of corpus ids, one per index position). Both sides' queries search the
index of the baseline's documents; the two result lists are judged by the top-k rules in the exact-score order of
the index's metric (a Flat index gives exactly the in-memory scenario), with the index's own recall@k beside them.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from harness.compare.kinds.source import EmbeddingPair, FilePair
from harness.compare.metrics import TopKAgreement, topk_agreement_from_lists, unit_rows
from harness.compare.scenarios import Scenario
from harness.compare.streaming import read_rows
from harness.config.project import IndexSettings
from harness.errors import HarnessError, first_line

__all__ = ["VectorIndexError", "build_index", "index_scenario", "load_index", "parse_id_map", "through_index"]

#: queries searched at a time (their results and exact scores: a few KB each)
QUERY_BATCH = 4096
#: an id map larger than this is refused before it is parsed (ids of 10 million documents)
ID_MAP_MAX_BYTES = 1 << 30


class VectorIndexError(HarnessError):
    """A vector index file, its id map or the ``[index]`` settings cannot be used (exit 2)."""


def _metric(faiss: Any, metric: str) -> int:
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def _rows(x: np.ndarray, metric: str, chunk: int = 16384) -> np.ndarray:
    """Rows as the index holds and searches them: float32, unit length for ``cosine`` (scaled ``chunk`` rows at a
    time: no float64 copy of the corpus)."""
    if metric != "cosine":
        return np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.float32)
    for s in range(0, len(x), chunk):
        out[s : s + chunk] = unit_rows(x[s : s + chunk])
    return out


def build_index(faiss: Any, rows: np.ndarray, settings: IndexSettings) -> Any:
    """An index of ``rows`` (baseline documents as ``_rows`` makes them) as ``settings`` describe it; a setting the
    corpus cannot satisfy (PQ sub-quantizers that do not divide the dimension, too few documents) is an error."""
    n, dim = rows.shape
    metric = _metric(faiss, settings.metric)
    faiss.omp_set_num_threads(settings.threads)
    if settings.type == "flat":
        index = faiss.IndexFlat(dim, metric)
    elif settings.type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.m, metric)
        index.hnsw.efConstruction, index.hnsw.efSearch = settings.ef_construction, settings.ef_search
        faiss.omp_set_num_threads(1)
    else:
        nlist = settings.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        if nlist > n:
            raise VectorIndexError(f"index: nlist = {nlist} is more than the {n} documents to train on")
        quantizer = faiss.IndexFlat(dim, metric)
        if settings.type == "ivf-flat":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
        else:
            if dim % settings.pq_m:
                raise VectorIndexError(f"index: pq_m = {settings.pq_m} does not divide the dimension {dim}")
            if n < 1 << settings.pq_nbits:
                raise VectorIndexError(f"index: pq_nbits = {settings.pq_nbits} needs {1 << settings.pq_nbits} documents "
                                  f"to train, the corpus has {n}")
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, settings.pq_m, settings.pq_nbits, metric)
            index.pq.cp.seed, index.pq.cp.min_points_per_centroid = settings.seed, 1
        index.cp.seed, index.nprobe = settings.seed, settings.nprobe
        index.cp.min_points_per_centroid = 1  # a small corpus trains quietly (FAISS would warn on stderr)
    try:
        if not index.is_trained:
            index.train(rows)
        index.add(rows)
    except RuntimeError as err:
        raise VectorIndexError(f"index: FAISS could not build the {settings.type} index: {first_line(err)}") from None
    finally:
        faiss.omp_set_num_threads(settings.threads)
    return index


def parse_id_map(raw: bytes, source: str) -> List[str]:
    """An id map's ids: a JSON array of distinct non-empty strings, else ``VectorIndexError`` naming ``source``."""
    try:
        ids = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise VectorIndexError(f"{source}: not a JSON array of corpus ids ({first_line(err)})") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise VectorIndexError(f"{source}: an id map must be a JSON array of non-empty strings (corpus ids)")
    if len(set(ids)) != len(ids):
        seen: set = set()
        twice = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise VectorIndexError(f"{source}: id {json.dumps(twice)[:80]} appears at two index positions")
    return ids


def load_index(faiss: Any, settings: IndexSettings, dim: int, corpus_ids: Sequence[str]) -> Tuple[Any, np.ndarray]:
    """The user's index (``settings.file``) and, per index position, the corpus position of its document
    (``settings.id_map``); checked against the corpus: dimension, metric, one id per vector, ids known."""
    path, map_path = str(settings.file), str(settings.id_map)
    for name, what in ((map_path, "id map"), (path, "index file")):
        if not Path(name).is_file():  # a FIFO or a device would block or never end
            raise VectorIndexError(f"{name}: no such {what}, or not a regular file")
    try:
        with open(map_path, "rb") as handle:
            raw = handle.read(ID_MAP_MAX_BYTES + 1)
    except OSError as err:
        raise VectorIndexError(f"{map_path}: cannot read the id map ({err.strerror or first_line(err)})") from None
    if len(raw) > ID_MAP_MAX_BYTES:
        raise VectorIndexError(f"{map_path}: an id map larger than {ID_MAP_MAX_BYTES >> 20} MB")
    ids = parse_id_map(raw, map_path)
    try:
        index = faiss.read_index(path)
    except (RuntimeError, OSError, TypeError) as err:
        raise VectorIndexError(f"{path}: not a readable FAISS index ({first_line(err)[:160]})") from None
    faiss.omp_set_num_threads(settings.threads)
    if index.d != dim:
        raise VectorIndexError(f"{path}: the index holds {index.d}-dimensional vectors, the model's have {dim}")
    if index.metric_type != _metric(faiss, settings.metric):
        have = "L2" if index.metric_type == faiss.METRIC_L2 else "inner product"
        raise VectorIndexError(f"{path}: the index ranks by {have}, [index] metric is {settings.metric!r}")
    if index.ntotal != len(ids):
        raise VectorIndexError(f"{path}: the index holds {index.ntotal} vectors, its id map {map_path} names {len(ids)}")
    where = {doc: i for i, doc in enumerate(corpus_ids)}
    unknown = [i for i in ids if i not in where]
    if unknown:
        raise VectorIndexError(f"{map_path}: {len(unknown)} id(s) unknown to the corpus, first {json.dumps(unknown[0])[:80]}")
    return index, np.array([where[i] for i in ids], dtype=np.int64)


def _exact(queries: np.ndarray, docs: np.ndarray, q_rows: np.ndarray, positions: np.ndarray, metric: str,
           chunk: int = 8192) -> np.ndarray:
    """The exact float64 score of each (query, document) pair in the index's metric, ``chunk`` pairs at a time,
    row by row (``cosine``: the bits ``TopKStream`` gives the same pair); -inf where ``positions`` is -1 (the
    index returned fewer than k results)."""
    out = np.full(len(positions), -np.inf)
    pairs = np.flatnonzero(positions >= 0)
    for s in range(0, len(pairs), chunk):
        at = pairs[s : s + chunk]
        q = np.asarray(queries[q_rows[at]], dtype=np.float64)
        d = np.asarray(docs[positions[at]], dtype=np.float64)
        if metric == "l2":  # -|q - d|^2: larger is nearer
            d -= q
            out[at] = -np.einsum("ij,ij->i", d, d)
        else:
            out[at] = np.einsum("ij,ij->i", *((unit_rows(q), unit_rows(d)) if metric == "cosine" else (q, d)))
    return out


def _ranked(index: Any, positions: np.ndarray, queries: np.ndarray, docs: np.ndarray, k: int,
            metric: str) -> Tuple[np.ndarray, np.ndarray]:
    """Per query, the index's k results as corpus positions in exact-score order (ties by position, missing
    results last as -1) and their exact scores."""
    _, labels = index.search(_rows(queries, metric), k)
    if labels.size and labels.max() >= len(positions):
        raise VectorIndexError(f"index: the index returned label {int(labels.max())}, beyond its id map")
    found = np.where(labels >= 0, positions[np.maximum(labels, 0)], -1)
    scores = _exact(queries, docs, np.repeat(np.arange(len(queries)), k), found.ravel(), metric).reshape(found.shape)
    order = np.lexsort((np.where(found < 0, np.iinfo(np.int64).max, found), -scores), axis=1)
    return np.take_along_axis(found, order, 1), np.take_along_axis(scores, order, 1)


def _judged(top_b: np.ndarray, score_b: np.ndarray, top_c: np.ndarray, base_of_cand: np.ndarray, k: int,
            tie: float) -> TopKAgreement:
    """``topk_agreement_from_lists`` for lists an index may leave short (-1: fewer than k results): the k-th is
    the baseline list's last result, a missing entry is neutral in the walk, and fewer results than the
    baseline's is a changed list. Missing entries get distinct ids per slot (ids are distinct within a list)."""
    found_b, found_c = top_b >= 0, top_c >= 0
    kth = np.where(found_b.any(axis=1), np.where(found_b, score_b, np.inf).min(axis=1, initial=np.inf),
                   np.finfo(np.float64).max)
    slots = -1 - np.arange(k)[None, :]
    agree = topk_agreement_from_lists(np.where(found_b, top_b, slots), np.where(found_c, top_c, slots),
                                      np.where(found_c, base_of_cand, kth[:, None]), kth, k, tie)
    kept = found_c.sum(axis=1) >= found_b.sum(axis=1)
    return replace(agree, same_order=agree.same_order & kept, same_set=agree.same_set & kept)


def index_scenario(base_q: np.ndarray, cand_q: np.ndarray, base_docs: np.ndarray, doc_ids: Sequence[str], k: int,
                   tie_tolerance: float, settings: IndexSettings) -> Scenario:
    """Keep the index, through the index: built from ``base_docs`` (or the user's file), searched with both
    sides' queries in batches; not run (with the reason) without FAISS. Bad settings or files raise
    ``VectorIndexError``."""
    title = f"keep the index, through a FAISS {settings.type if settings.file is None else 'index file'}"
    try:
        import faiss
    except ImportError as err:
        return Scenario("index", title, None, reason=f"faiss is not installed ({first_line(err)}): "
                                                   "pip install 'embedding-harness[index]'")
    k = min(int(k), len(base_docs))
    rows_f32 = _rows(base_docs, settings.metric)  # what the index holds; exact search for the recall (faiss.knn)
    if settings.file is not None:
        index, positions = load_index(faiss, settings, base_docs.shape[1], doc_ids)
    else:
        index, positions = build_index(faiss, rows_f32, settings), np.arange(len(base_docs), dtype=np.int64)
    metric = _metric(faiss, settings.metric)
    parts, recall = [], []
    for s in range(0, len(base_q), QUERY_BATCH):
        bq, cq = base_q[s : s + QUERY_BATCH], cand_q[s : s + QUERY_BATCH]
        top_b, score_b = _ranked(index, positions, bq, base_docs, k, settings.metric)
        top_c, _ = _ranked(index, positions, cq, base_docs, k, settings.metric)
        rows: np.ndarray = np.repeat(np.arange(len(bq)), k)
        base_of_cand = _exact(bq, base_docs, rows, top_c.ravel(), settings.metric).reshape(top_c.shape)
        _, exact = faiss.knn(_rows(bq, settings.metric), rows_f32, k, metric=metric)
        kth = _exact(bq, base_docs, rows, exact.ravel(), settings.metric).reshape(exact.shape).min(axis=1)
        recall.append((score_b >= kth[:, None] - tie_tolerance).mean(axis=1))
        parts.append(_judged(top_b, score_b, top_c, base_of_cand, k, tie_tolerance))
    share = float(np.concatenate(recall).mean()) if recall else 1.0
    return Scenario("index", title, TopKAgreement.concat(k, parts), recall=share)


def through_index(pair: EmbeddingPair, k: int, tie_tolerance: float, index: Optional[IndexSettings]) -> Scenario:
    """Keep the index, through the index (``index_scenario``): the documents and every query in memory, as the
    index holds them; not run without an ``[index]`` or for arrays."""
    if index is None or not isinstance(pair, FilePair):
        return Scenario("index", "keep the index, through a FAISS index", None,
                        reason="no [index] configured (harness.toml, or --index FILE --id-map FILE)")
    base_q, cand_q = pair.query_vectors()
    at = np.flatnonzero(pair.documents)
    docs = read_rows(pair.base, pair.model_id, at)
    return index_scenario(base_q, cand_q, docs, pair.ids_at(at), k, tie_tolerance, index)
