"""The training input pipelines leave the process's malloc settings alone.

TensorFlow's ``Dataset.from_generator`` sets glibc's ``M_TRIM_THRESHOLD`` for
the whole process the first time it runs (logging "Memory patch applied"),
which switches off malloc's adaptive mmap threshold: XLA:CPU then maps and
unmaps its large buffers on every step, and the ReID demo's jitted step ran
20-25% slower (``benchmarks/loop_overhead.py``). Each check runs in a fresh
process and reads TensorFlow's log; the first test shows that the log does
reveal the patch, so the second can fail.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATCH = "Memory patch applied"


def _stderr_of(script: str, tmp_path) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batches ok" in proc.stdout, proc.stdout
    return proc.stderr


def test_a_generator_dataset_shows_the_patch_in_the_log(tmp_path):
    err = _stderr_of("""
        import tensorflow as tf
        ds = tf.data.Dataset.from_generator(lambda: iter(range(3)), output_signature=tf.TensorSpec((), tf.int32))
        assert list(ds.as_numpy_iterator()) == [0, 1, 2]
        print("batches ok")
        """, tmp_path)
    assert PATCH in err


def test_reid_face_and_classification_training_pipelines_do_not_patch_malloc(tmp_path):
    err = _stderr_of("""
        import sys
        from pathlib import Path
        import numpy as np
        from PIL import Image
        from stra_jax.data.classification.dataset import Example
        from stra_jax.data.classification.pipeline import train_dataset as class_train
        from stra_jax.data.face.dataset import prepare_face_dataset
        from stra_jax.data.face.pipeline import numpy_train_batches as face_batches
        from stra_jax.data.reid.common import Record
        from stra_jax.data.reid.pipeline import train_dataset as reid_train

        root = Path(sys.argv[1])
        paths = []
        for i in range(8):
            path = root / "train" / f"id{i % 2}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((16, 8, 3), 10 * i, np.uint8)).save(path)
            paths.append(str(path))
        kw = dict(global_batch=4, image_size=(16, 8), epochs=2)
        assert len(list(reid_train([Record(p, i % 2, 0) for i, p in enumerate(paths)], **kw)
                        .as_numpy_iterator())) == 4
        assert len(list(class_train([Example(p, i % 2) for i, p in enumerate(paths)], **kw)
                        .as_numpy_iterator())) == 4
        assert len(list(face_batches(prepare_face_dataset("folder", root).train, **kw))) == 4
        print("batches ok")
        """, tmp_path)
    assert PATCH not in err
