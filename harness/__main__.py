"""``python -m harness``: the same as the ``harness`` console script."""

from harness.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
