"""Train (and evaluate) a model on a task (ReID by default; see ``config.task``).

    python train.py --config configs/reid_synthetic.py --workdir runs/synthetic
    stra-train --config configs/reid_synthetic.py --workdir gs://bucket/runs/synthetic   # after pip install .
    python train.py --config configs/reid_market.py:authors --workdir runs/market \\
        --config.dataset.root=/data/market1501 --config.init_from=resnet50-19c8e357.pth

Rerunning the same command resumes from the workdir's latest checkpoint (a
damaged one is moved aside and the previous one used); Ctrl-C or SIGTERM saves
a checkpoint at the current step first. The
workdir keeps evaluable model directories (``model_best``, ``model_last``):
``python eval.py --config ... --checkpoint WORKDIR``. On a multi-host TPU/GPU
cluster set ``--distributed`` (calls ``jax.distributed.initialize()``); the
global batch is sharded over all devices.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<exp>.py[:variant]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, logs and the resolved config go here")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() (multi-host)")


def main(argv) -> None:
    del argv
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise app.UsageError("--config and --workdir are required")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    import jax

    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    from stra_jax.training.loop import Interrupted, NonFiniteLoss, train_and_evaluate

    from stra_jax.tools.cli import USER_ERRORS, run_or_exit

    try:
        run_or_exit(train_and_evaluate, _CONFIG.value, _WORKDIR.value,
                    interrupted="interrupted before training started; nothing was saved",
                    errors=USER_ERRORS + (NonFiniteLoss,))
    except Interrupted as err:  # a signal during training: its checkpoint is saved
        print(f"{err}", file=sys.stderr)
        sys.exit(err.exit_code)


def cli() -> None:
    """``stra-train`` / ``python train.py``."""
    from stra_jax.tools.cli import flags_parser

    app.run(main, flags_parser=flags_parser(__doc__))


if __name__ == "__main__":
    cli()
