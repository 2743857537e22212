"""Test-session set-up, for this process and every subprocess the tests start
(train.py, eval.py, multi-device scripts):

* one persistent XLA compilation cache. Many tests run the same tiny networks
  in fresh processes; compiling them once instead of in every process halves
  those tests' time. The cache stores compiled executables keyed by the
  program, so results are unchanged.
* ``--xla_backend_optimization_level=0``: LLVM generates the CPU code without
  optimising it. At the tests' tiny sizes compiling, not running, is most of
  the time: the suite went from 659 s to 521 s on two workers (2026-12-05,
  939 tests, AVX-512 host), no file got slower by more than a second or two,
  and every test passed both ways. XLA's own (HLO) passes, which decide what
  the program computes and in what order, run as before. Set the flag in
  ``XLA_FLAGS`` yourself (e.g. ``=2``) to test with optimised code.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

OPT_FLAG = "--xla_backend_optimization_level"

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="stra-jax-test-xla-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

if OPT_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {OPT_FLAG}=0".strip()
