"""embedding-harness: prove that embeddings and rerank scores did not move across environments."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
