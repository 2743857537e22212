"""Draw one query's ranked list as a PNG (torchreid's ``visrank`` picture):
the query, then its top-k gallery images with a green (same pid) or red
(different pid) border, each titled. Matplotlib's Agg backend; written atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

GREEN = (30, 160, 40)
RED = (215, 30, 30)
GREY = (90, 90, 90)


def load_image(path: str | Path | BinaryIO, size: tuple[int, int]) -> np.ndarray:
    """The image at ``path`` (or an open binary file) as RGB uint8 of shape (H, W, 3) = ``size``."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR))


def with_border(image: np.ndarray, color: tuple[int, int, int], width: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 -> (H + 2b, W + 2b, 3) framed in ``color``; b defaults to ~5% of W (>= 2 px)."""
    b = max(2, round(0.05 * image.shape[1])) if width is None else width
    out = np.empty((image.shape[0] + 2 * b, image.shape[1] + 2 * b, 3), dtype=np.uint8)
    out[:] = np.asarray(color, dtype=np.uint8)
    out[b:b + image.shape[0], b:b + image.shape[1]] = image
    return out


def draw_rank_list(path: str | Path, query_image: np.ndarray, query_title: str,
                   gallery_images: Sequence[np.ndarray], gallery_titles: Sequence[str],
                   matches: Sequence[bool], title: str | None = None) -> Path:
    """Write the ranked list of one query to ``path`` (PNG, atomically).

    Args:
      query_image: (H, W, 3) uint8. gallery_images: k arrays (H, W, 3) uint8, best first.
      query_title, gallery_titles: text above each image (k titles).
      matches: k booleans: green border if True, red if False.
      title: optional line above the whole figure.
    Returns:
      ``Path(path)``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stra_jax.utils import save_figure

    if not len(gallery_images) == len(gallery_titles) == len(matches):
        raise ValueError(f"gallery_images ({len(gallery_images)}), gallery_titles ({len(gallery_titles)}) "
                         f"and matches ({len(matches)}) must have the same length")
    h, w = query_image.shape[:2]
    n = len(gallery_images)
    col_w = max(1.25, 2.2 * w / h)  # inches per column; pedestrians (2:1) get 1.25 in
    img_h = col_w * h / w
    head = 0.42 + (0.3 if title else 0.0)  # inches above the images: their titles (2 lines) and the title
    fig_h = img_h + head + 0.08
    fig = plt.figure(figsize=(col_w * (n + 1.3), fig_h), dpi=100)
    grid = fig.add_gridspec(1, n + 2, width_ratios=[1, 0.3] + [1] * n, wspace=0.08,
                            left=0.01, right=0.99, bottom=0.04 / fig_h, top=1 - head / fig_h)
    panels = [(0, query_image, GREY, query_title)]
    panels += [(i + 2, img, GREEN if m else RED, t)
               for i, (img, m, t) in enumerate(zip(gallery_images, matches, gallery_titles))]
    for column, image, color, text in panels:
        ax = fig.add_subplot(grid[0, column])
        ax.imshow(with_border(np.asarray(image, dtype=np.uint8), color), interpolation="nearest")
        ax.set_title(text, fontsize=8, color="black" if column == 0 else
                     tuple(c / 255 for c in color), linespacing=1.15)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9, x=0.01, y=1 - 0.06 / fig_h, ha="left", va="top")
    return save_figure(fig, path)
