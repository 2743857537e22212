"""Train (and evaluate) a model: ``python train.py --config CONFIG --workdir DIR``.

The same as the ``stra-train`` console script (``pip install .``); the code and
``--help`` are in ``stra_jax/tools/train.py``.
"""
from stra_jax.tools.train import cli, main  # (defines the flags)

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
