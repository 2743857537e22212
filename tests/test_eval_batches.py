"""``Task.eval_batches``: a task's evaluation preprocessing on image files, from
one pipeline (what ``extract_features`` feeds a model), and ``eval_images``
built on it (``visualize_modes``, ``export``).

The oracle is written here: PIL decodes the file, the expected input is the
task's documented normalisation of it at its own size (no resize, so no
resampler to agree on), and the display image is the decoded pixels / 255.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stra_jax.tools.cli import load_config

# task name -> (config, the task's documented normalisation of uint8 pixels)
TASKS = {
    "reid": ("configs/reid_synthetic.py:smoke",
             lambda u8: (u8 / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])),
    "face": ("configs/face_synthetic.py:smoke", lambda u8: (u8 - 127.5) / 128.0),
}


def _pngs(tmp_path, n, size=(16, 8)):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("name", sorted(TASKS))
def test_eval_batches_stream_the_tasks_preprocessing_padded_to_whole_batches(tmp_path, name):
    from stra_jax.tasks import TASKS as REGISTERED

    config_path, normalise = TASKS[name]
    config = load_config(config_path)
    task = REGISTERED.get(name)
    paths = _pngs(tmp_path, 5)
    batches = list(task.eval_batches(config, paths, (16, 8), 2))
    assert [b.shape for b in batches] == [(2, 16, 8, 3)] * 3  # 5 images: the last batch padded
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float64) for p in paths])
    np.testing.assert_allclose(np.concatenate(batches)[:5], normalise(pixels), atol=1e-5)
    inputs, shown = task.eval_images(config, paths, (16, 8))
    np.testing.assert_allclose(inputs, normalise(pixels), atol=1e-5)
    np.testing.assert_allclose(shown, pixels / 255.0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(TASKS) + ["classification"])
def test_eval_batches_name_an_unreadable_file(tmp_path, name):
    from stra_jax.tasks import TASKS as REGISTERED

    config = load_config(TASKS[name][0] if name in TASKS else "configs/imagenet.py:smoke")
    paths = _pngs(tmp_path, 4)
    with open(paths[2], "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match=f"{paths[2]}: (corrupt or unreadable|undecodable) image"):
        list(REGISTERED.get(name).eval_batches(config, paths, (16, 8), 2))
