"""Evaluate a model: ``python eval.py --config CONFIG --checkpoint DIR``.

The same as the ``stra-eval`` console script (``pip install .``); the code and
``--help`` are in ``stra_jax/tools/evaluate.py``.
"""
from stra_jax.tools.evaluate import cli, main, run  # (defines the flags)

__all__ = ["cli", "main", "run"]

if __name__ == "__main__":
    cli()
