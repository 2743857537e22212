"""Evaluate a trained model with the evaluators of its run (``config.evals``).

    python eval.py --checkpoint runs/synthetic                       # a training workdir: its own config
    stra-eval --checkpoint runs/synthetic                            # after pip install .
    python eval.py --config configs/reid_market.py --checkpoint DIR [--output results.json]
    python eval.py --config configs/reid_market.py:authors --checkpoint DIR \\
        --config.dataset.root=/data/market1501 --config.evals.reid.flip=True --override_config

Without ``--config`` the run's own config is used: the workdir's
``config.json``, or the config training recorded in a model directory's
``model.json`` (the same data, image size and evaluators as training, so the
numbers are the ones the run logged). A model with no recorded run (converted
PyTorch weights) needs ``--config``. A ``--config`` given for a recorded run
must agree with it on the task, model, input size, dataset and evaluators; where
it does not, the keys that differ are named and nothing runs, unless
``--override_config`` says to evaluate with the given config (another dataset,
flip on, another data root).

``--checkpoint``: a model directory (``model.json`` + ``variables/``, as written
by ``python -m stra_jax.convert`` or by training), or a training workdir, whose
``model_best`` (else ``model_last``) is used; a workdir's data
(``WORKDIR/data``) is found as training found it. The task of the config
(``config.task``) loads the data; the evaluators are the ones training runs, so
the numbers are the ones the run logged. Prints each evaluator's table and
writes the metrics (with the config) to ``--output``, by default
``MODEL_DIR/eval_<dataset>.json``; evaluators that draw (face verification:
one ROC curve per set) put their PNGs beside it.

``--visualize-ranks K`` also draws ranked lists (torchreid's visrank) of the
``--rank-worst`` lowest-AP and ``--rank-random`` random queries: the query and
its top-K gallery images (green: same pid, red: other), same pid + camera
excluded as in mAP, into ``OUT/ranks_<evaluator>/`` (PNGs + ``ranks.json``);
``--out`` defaults to the JSON's folder. It needs a ReID (reid_retrieval) evaluator.

    python eval.py --checkpoint runs/synthetic --visualize-ranks 10 --out OUT

    python eval.py --checkpoint runs/face_ms1m   # LFW, CFP-FP, ... table
"""
from __future__ import annotations


from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<exp>.py[:variant] (default: the run's own)",
                                          lock_config=True)
_OVERRIDE = flags.DEFINE_bool("override_config", False, "evaluate with --config where it differs from the run's "
                              "recorded config (another dataset, image size or evaluator settings)")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "model directory (model.json + variables/) or training workdir")
_OUTPUT = flags.DEFINE_string("output", None, "JSON file for the results (default: MODEL_DIR/eval_<dataset>.json)")
_RANKS = flags.DEFINE_integer("visualize-ranks", 0, "draw ranked lists of the top K gallery images (0: off)",
                              lower_bound=0)
_WORST = flags.DEFINE_integer("rank-worst", 8, "ranked lists of this many lowest-AP queries", lower_bound=0)
_RANDOM = flags.DEFINE_integer("rank-random", 8, "and of this many random queries (seed 0)", lower_bound=0)
_OUT = flags.DEFINE_string("out", None, "folder for the ranked-list pictures (default: the JSON's folder)")


def run_and_config(config, checkpoint: str, override: bool = False):
    """``(model directory, workdir or None, the config to evaluate with)``: the
    run's recorded config when ``config`` is None; ``config`` itself when the run
    records none, when it agrees with the recorded one on :data:`EVAL_KEYS`, or
    with ``override``; else a ConfigError naming the keys that differ."""
    import ml_collections

    from stra_jax.models.io import resolve_model_dir
    from stra_jax.tools.run_inputs import config_differences, run_config
    from stra_jax.utils import ConfigError, as_json

    model_dir, workdir = resolve_model_dir(checkpoint)
    recorded, source = run_config(model_dir, workdir)
    if config is None:
        if not recorded:
            raise ValueError(f"{model_dir}: no config recorded (no config.json beside it, no info.config in "
                             "model.json); pass --config configs/<exp>.py[:variant]")
        print(f"config: {source}")
        return model_dir, workdir, ml_collections.ConfigDict(recorded)
    if recorded and not override:
        differ = config_differences(as_json(config.to_dict()), recorded)
        if differ:
            shown = "; ".join(differ[:8]) + (f"; and {len(differ) - 8} more" if len(differ) > 8 else "")
            raise ConfigError(f"--config differs from the run's config {source} (given vs recorded): {shown}. "
                              "Leave out --config to evaluate as the run was trained, or add --override_config "
                              "to evaluate with the given one")
    return model_dir, workdir, config


def run(config, checkpoint: str, output: str | None, visualize_ranks: int = 0, out_dir: str | None = None,
        rank_worst: int = 8, rank_random: int = 8, override: bool = False) -> dict:
    """Evaluate ``checkpoint`` (a model directory or training workdir) with the
    evaluators of ``config`` (None: the run's own; see :func:`run_and_config`)."""
    from stra_jax.evaluation.evaluators import of_evaluator, run_evaluators, scalars, tables
    from stra_jax.models import load_model
    from stra_jax.models.io import read_model_spec
    from stra_jax.tasks import make_task
    from stra_jax.utils import ConfigError, as_path, write_json_atomic

    recorded = config is None
    model_dir, workdir, config = run_and_config(config, checkpoint, override)
    try:
        task = make_task(config, workdir)
    except ConfigError as err:
        if not recorded:
            raise
        raise ConfigError(f"the run's recorded config does not load in this version ({err}); it was written by an "
                          "older one: pass the config file it was trained with, --config configs/<exp>.py[:variant]"
                          ) from None
    print(task.load())
    evaluators = task.evaluators()
    if not evaluators:
        raise ValueError("config.evals is empty: nothing to evaluate")
    # eval.py's picture options; each evaluator declares the ones it understands.
    options = {"visualize_ranks": visualize_ranks, "rank_worst": rank_worst, "rank_random": rank_random,
               "rank_dir": as_path(out_dir) if out_dir else None}
    if visualize_ranks and not any("visualize_ranks" in e.artifact_options for e in evaluators):
        raise ValueError(f"--visualize-ranks needs a ReID evaluator (one that draws ranked lists: type "
                         f"reid_retrieval) in config.evals; this config has {[e.name for e in evaluators]}")
    for evaluator in evaluators:
        evaluator.prepare_artifacts(options)
    model, variables = load_model(model_dir, expect_arch=config.model.name)
    info = read_model_spec(model_dir).get("info", {})
    print(f"model: {model_dir}" + (f" (step {info['step']})" if "step" in info else ""))
    metrics = run_evaluators(evaluators, model, variables)
    logged = info.get("metrics")
    if logged:
        differ = {k: (v, logged[k]) for k, v in scalars(metrics).items()
                  if k in logged and not k.endswith("seconds") and abs(v - logged[k]) > 1e-6}
        if differ:
            print(f"note: differs from what training logged for this model: {differ}")
    dataset = (config.get("dataset") or {}).get("name") or config.get("task", "reid")
    payload = {"dataset": dataset, "checkpoint": str(model_dir), "metrics": metrics, "config": config.to_dict()}
    out = as_path(output) if output else model_dir / f"eval_{dataset}.json"
    write_json_atomic(out, payload)
    print(f"wrote {out}")
    for evaluator in evaluators:  # pictures and files of evaluators that write them (ROC curves, ranked lists)
        written = evaluator.write_artifacts(of_evaluator(metrics, evaluator.name), out.parent, model=model,
                                            variables=variables, options=options)
        for path in written if len(written) <= 3 else ():
            print(f"wrote {path}")
        if len(written) > 3:
            print(f"wrote {len(written)} files of evaluator {evaluator.name} in {written[-1].parent}")
    print(tables(evaluators, metrics))
    return payload


def main(argv) -> None:
    del argv
    if _CHECKPOINT.value is None:
        raise app.UsageError("--checkpoint is required (a training workdir or a model directory)")
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    from stra_jax.tools.cli import run_or_exit

    run_or_exit(run, _CONFIG.value, _CHECKPOINT.value, _OUTPUT.value, _RANKS.value, _OUT.value, _WORST.value,
                _RANDOM.value, _OVERRIDE.value, interrupted="interrupted; nothing was written")


def cli() -> None:
    """``stra-eval`` / ``python eval.py``."""
    from stra_jax.tools.cli import flags_parser

    app.run(main, flags_parser=flags_parser(__doc__))


if __name__ == "__main__":
    cli()
