"""Test-session set-up: one persistent XLA compilation cache for this process and
every subprocess the tests start (train.py, eval.py, multi-device scripts).

Many tests run the same tiny networks in fresh processes; compiling them once
instead of in every process halves those tests' time. The cache stores compiled
executables keyed by the program, so results are unchanged.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="stra-jax-test-xla-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
