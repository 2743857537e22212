"""Command-line helpers shared by train.py and eval.py."""
from __future__ import annotations

import sys

from absl import flags


def parse_flags_or_exit(argv: list[str]) -> list[str]:
    """absl flag parsing that turns a bad flag or config override (e.g. an unknown
    ``--config.train.lrr``, which ml_collections answers with the nearest valid
    key) into one message and exit status 2 instead of a traceback."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as err:
        message = str(err).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
