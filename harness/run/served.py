"""Run one served model (``backend = "http"``) over the corpus: the runner's stage for a model behind a server.

Nothing is loaded here. The record keeps header names only, never their values, and ``server_facts`` no URL (a
port is not a factor). A ``ServerError`` propagates: the runner writes no results file.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Tuple

import numpy as np

from harness.config.corpus import Corpus
from harness.config.registry import ModelSpec
from harness.results.meta import ModelRecord
from harness.results.schema import ModelRows

__all__ = ["is_served", "run_served", "served_settings", "server_facts", "recorded_source"]


def is_served(spec: ModelSpec) -> bool:
    return spec.backend == "http"


def served_settings(spec: ModelSpec, batch_size: int, **overrides: Any) -> Any:
    """The client settings of a served model: its ``http`` table, asking for the registry id unless the table
    names another model, in requests of ``http.batch_size`` (else the model's ``batch_size``, else the run's)."""
    from harness.run.http_backend import settings_from_mapping

    entry = {"model": spec.id, "batch_size": spec.batch_size or batch_size, **(spec.http or {}), **overrides}
    return settings_from_mapping(entry, where=f"model '{spec.id}'")


def server_facts(record: Dict[str, Any]) -> Dict[str, Any]:
    """What the fingerprint records of a server (a factor for ``harness explain``): the api, the model asked
    for, the request batch size and concurrency, and what the server said about itself (``/info``,
    ``/models``, version headers). The URL stays in the model's record only."""
    keys = ("api", "model", "request_batch_size", "concurrency", "raw_scores", "body")
    return {**{k: record.get(k) for k in keys}, "server": record.get("server")}


def recorded_source(spec: ModelSpec) -> Dict[str, Any]:
    """The entry as the results file records it: its ``http.url`` without user, query or fragment (a query
    value may be a key; the client scrubs it from everything else it hands out)."""
    from harness.config.http import shown_url

    source = spec.describe()
    if isinstance(source.get("http"), dict) and isinstance(source["http"].get("url"), str):
        source["http"] = {**source["http"], "url": shown_url(source["http"]["url"])}
    return source


def _embed(spec: ModelSpec, corpus: Corpus, batch_size: int) -> Tuple[List[ModelRows], Dict[str, Any], int]:
    from harness.run.http_backend import HttpModelClient

    with HttpModelClient(served_settings(spec, batch_size)) as client:
        client.server_info()
        documents = client.embed([t.text for t in corpus.documents])
        queries = client.embed([t.text for t in corpus.queries])
        record = client.record()
    vectors = np.concatenate([documents, queries]) if len(queries) else documents
    rows = ModelRows.embedded(spec.id, corpus.documents, corpus.queries, vectors)
    return [rows], record, len(rows.item_ids)


def _rerank(spec: ModelSpec, corpus: Corpus, batch_size: int) -> Tuple[List[ModelRows], Dict[str, Any], int]:
    """Scores as the server returns them (Infinity/TEI: the sigmoid of a one-label model, as ``predict``);
    ``logits = true`` adds ``<id>@logits`` from a second pass with ``raw_scores``."""
    from harness.run.http_backend import HttpModelClient

    texts = {t.id: t.text for t in corpus.texts()}
    pairs = [(texts[p.query_id], texts[p.passage_id]) for p in corpus.pairs]
    passes: List[Tuple[str, Dict[str, bool]]] = [("", {})] + ([("@logits", {"raw_scores": True})] if spec.logits else [])
    rows, records = [], {}
    for suffix, overrides in passes:
        with HttpModelClient(served_settings(spec, batch_size, **overrides)) as client:
            client.server_info()
            scores = client.score_pairs(pairs)
            records[suffix] = client.record()
        rows.append(ModelRows.reranked(spec.id + suffix, corpus.pairs, scores))
    record = records[""]
    if "@logits" in records:
        record = {**record, "logits_pass": records["@logits"]}
    return rows, record, len(pairs) * len(passes)


def run_served(spec: ModelSpec, corpus: Corpus,
               batch_size: int) -> Tuple[List[ModelRows], Dict[str, ModelRecord], Dict[str, Any]]:
    """The rows and records of one served model, and its server facts for the fingerprint."""
    started = time.perf_counter()
    rows, client_record, count = (_embed if spec.kind == "bi-encoder" else _rerank)(spec, corpus, batch_size)
    elapsed = time.perf_counter() - started
    record = ModelRecord.of(kind=spec.kind, status="ok", source=recorded_source(spec), found_via="server",
                            backend="http", compute_s=round(elapsed, 4), items=count,
                            items_per_s=round(count / elapsed, 2) if elapsed > 0 else None, http=client_record)
    encode = {"backend": "http", "request_batch_size": client_record.get("request_batch_size")}
    records = {entry.model_id: record.for_entry(entry, spec.id, "float32", {
        **encode, **({"raw_scores": True} if entry.model_id.endswith("@logits") else {})}) for entry in rows}
    return rows, records, server_facts(client_record)
