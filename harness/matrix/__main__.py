"""``python -m harness.matrix``: kept for scripts written before ``harness matrix``."""

from harness.matrix.spec import main

if __name__ == "__main__":
    raise SystemExit(main())
