"""The trainer, the same for every task (``tasks/``): ``loop.py`` (the epoch loop:
data -> sharded train step -> logs, evaluators, checkpoints, model directories),
``step.py`` (the jitted train step), ``state.py`` (the train state),
``optim.py`` and ``schedules.py`` (optimisers and learning-rate schedules chosen
by the config), ``options.py`` (their config keys), ``checkpoint.py`` (Orbax
checkpoints: latest N, best, resume), ``validate.py`` (up-front config and
workdir checks), ``writers.py`` (JSONL / TensorBoard scalars) and
``interrupt.py`` (SIGINT / SIGTERM). Library code never imports it.
"""
