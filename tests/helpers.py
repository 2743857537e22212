"""Test helpers: non-trivial variables and multi-device subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def randomize_variables(variables, seed: int = 0):
    """Perturb every parameter and BatchNorm statistic so that tests can fail.

    Freshly initialised BatchNorms are identities (scale 1, bias 0, mean 0, var 1)
    and conv biases are 0; a reference that ignored them would still agree.
    """
    rng = np.random.default_rng(seed)

    def perturb(path, leaf):
        name = str(path[-1].key)
        shape = leaf.shape
        if name == "scale":
            new = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name == "var":
            new = rng.uniform(0.5, 2.0, shape)
        elif name in ("bias", "mean"):
            new = 0.3 * rng.standard_normal(shape)
        else:  # kernels keep their init scale plus a little noise
            new = np.asarray(leaf) + 0.05 * rng.standard_normal(shape)
        return jnp.asarray(new, leaf.dtype)

    return jax.tree_util.tree_map_with_path(perturb, variables)


def multidevice_env(devices: int) -> dict[str, str]:
    """This process's environment for a subprocess with ``devices`` simulated CPU
    devices: the device count added to ``XLA_FLAGS`` (keeping the session's other
    flags, tests/conftest.py), CPU only, the repository importable."""
    flags = os.environ.get("XLA_FLAGS", "")
    return dict(os.environ, JAX_PLATFORMS="cpu",
                XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count={devices}".strip(),
                PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def run_multidevice(script: str, devices: int = 8, timeout: int = 600) -> str:
    """Run ``script`` in a fresh Python with ``devices`` simulated CPU devices.

    XLA reads the device count once at start-up, so this needs its own process.
    Returns stdout; raises with stderr when the script fails.
    """
    env = multidevice_env(devices)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"multi-device script failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout
