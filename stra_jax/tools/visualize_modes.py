"""Draw the mode masks M^g and gates r of a StRA block on your images (paper Fig. 4).

    python -m stra_jax.tools.visualize_modes --checkpoint DIR --images FOLDER --out OUT \\
        [--block NAME] [--max-images N] [--image-size H,W]

``--checkpoint``: a model directory (model.json + variables/) or a training
workdir (its model_best, else model_last). ``--block``: one StRA block by its
module path (``layer4_2/stra/mode``, or a unique leading part: ``layer4_2``);
default the network's last. For each of the first N images of FOLDER (sorted,
searched recursively) writes ``OUT/NN_<name>_modes.png``: the input, the
argmax-mode part map, the mean gate of each mode and one heat map per mode; and
``OUT/summary_modes.png``: one row per image (input, part map, the G masks).

Preprocessing is the evaluation pipeline of the run's task (``Task.eval_images``:
bilinear resize, then ImageNet normalisation for ReID, ``(x - 127.5) / 128`` for
faces), read from the run (``tools/run_inputs.py``). Input size:
``--image-size``, else the run's ``config.json`` ``input.image_size`` (a
workdir, or the config training recorded in model.json), else the model's
``input_size`` (face models), else 256x128. Every PNG is written to a temporary
name and renamed: an interrupted run leaves no half-written file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from stra_jax.tools.run_inputs import input_settings, task_and_config
from stra_jax.utils import as_path, atomic_file, parse_size


def upsample(maps: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """(h, w, ...) -> (H, W, ...), bilinear with half-pixel centres (or nearest)."""
    h, w = maps.shape[:2]

    def coords(n_out: int, n_in: int):
        c = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(c).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), c - lo

    if nearest:
        rows = np.minimum((np.arange(size[0]) * h) // size[0], h - 1)
        cols = np.minimum((np.arange(size[1]) * w) // size[1], w - 1)
        return maps[rows][:, cols]
    (y0, y1, fy), (x0, x1, fx) = coords(size[0], h), coords(size[1], w)
    extra = (1,) * (maps.ndim - 2)
    fy, fx = fy.reshape(-1, 1, *extra), fx.reshape(1, -1, *extra)
    top = maps[y0][:, x0] * (1 - fx) + maps[y0][:, x1] * fx
    bottom = maps[y1][:, x0] * (1 - fx) + maps[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def mode_colors(g: int) -> np.ndarray:
    """(G, 3) distinct colours, one per mode (the part map's and the bars')."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if g <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N)[:3] for i in range(g)])


def _part_map(ax, image: np.ndarray, masks: np.ndarray, colors: np.ndarray) -> None:
    parts = upsample(np.argmax(masks, axis=-1), image.shape[:2], nearest=True)
    ax.imshow(image)
    ax.imshow(colors[parts], alpha=0.55)


def _mask(ax, image: np.ndarray, mask: np.ndarray, vmax: float):
    """Heat map of one mode's mask over the greyscale image, on the figure's one
    absolute scale (0 to ``vmax``, the largest mask value drawn): a nearly uniform
    mask stays pale instead of being stretched to its own peak."""
    ax.imshow(image.mean(-1), cmap="gray", vmin=0, vmax=1)
    return ax.imshow(upsample(mask, image.shape[:2]), cmap="jet", vmin=0, vmax=vmax, alpha=0.5)


def mask_scale(masks: np.ndarray) -> float:
    """The top of the masks' one colour scale: the largest mask value drawn, but at
    least twice the uniform level 1/(h w), so that masks that are all nearly uniform
    (an untrained or collapsed block) show at mid-scale, not as strong heat.
    masks (..., h, w, G)."""
    return max(float(masks.max()), 2.0 / (masks.shape[-3] * masks.shape[-2]))


def _mask_colorbar(fig, heat, cax, positions: int, fontsize: float) -> None:
    """The masks' colour bar (absolute values), with the uniform level 1/(h w) marked
    and labelled among its ticks: a mask at that level everywhere attends to
    nothing in particular."""
    bar = fig.colorbar(heat, cax=cax)
    bar.set_label("M$^g$ (sums to 1 over the h$\\cdot$w positions)", fontsize=fontsize)
    uniform = 1.0 / positions
    top = heat.norm.vmax
    ticks = [t for t in bar.get_ticks() if 0 <= t <= top and abs(t - uniform) > 0.08 * top]
    bar.set_ticks(sorted(ticks + [uniform]))
    bar.set_ticklabels([f"1/{positions} uniform" if t == uniform else f"{t:.3g}" for t in sorted(ticks + [uniform])])
    bar.ax.tick_params(labelsize=fontsize - 1)
    bar.ax.axhline(uniform, color="white", linewidth=2.5)
    bar.ax.axhline(uniform, color="black", linewidth=1.0, linestyle="--")


def _clean(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _figure(rows: int, cols: int, cell: tuple[float, float], gap: tuple[float, float],
            margins: tuple[float, float, float, float], dpi: int, **grid_kw):
    """A figure sized in inches around a rows x cols grid of (width, height) cells:
    ``gap`` (horizontal, vertical) between cells, ``margins`` (left, right, top, bottom)."""
    import matplotlib.pyplot as plt

    left, right, top, bottom = margins
    width = left + right + cols * cell[0] + (cols - 1) * gap[0]
    height = top + bottom + rows * cell[1] + (rows - 1) * gap[1]
    fig = plt.figure(figsize=(width, height), dpi=dpi)
    grid = fig.add_gridspec(rows, cols, left=left / width, right=1 - right / width, top=1 - top / height,
                            bottom=bottom / height, wspace=gap[0] / cell[0], hspace=gap[1] / cell[1], **grid_kw)
    return fig, grid


def draw_image(image: np.ndarray, masks: np.ndarray, gates: np.ndarray, gates2: np.ndarray | None,
               title: str):
    """One image's figure. image (H, W, 3) in [0, 1]; masks, gates, gates2 (h, w, G).

    Top: the input, the part map (argmax_g M^g, legend), the mean gate of each mode
    (bars; hatched: the interaction pass). Below: one heat map per mode, titled with
    its mean gate and its peak mass, on one absolute colour scale (:func:`mask_scale`)
    whose bar marks the uniform level 1/(h w)."""
    from matplotlib.patches import Patch

    g = masks.shape[-1]
    colors = mode_colors(g)
    cols = max(5, min(g, 8))
    mask_rows = -(-g // cols)
    cw = 1.3
    fig, grid = _figure(1 + mask_rows, cols + 1, (cw, cw * image.shape[0] / image.shape[1]), (0.15, 0.55),
                        (0.15, 1.15, 0.75, 0.5), dpi=100, width_ratios=[1] * cols + [0.12])
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(image)
    ax.set_title("input", fontsize=9)
    _clean(ax)
    ax = fig.add_subplot(grid[0, 1])
    _part_map(ax, image, masks, colors)
    ax.set_title("part map\n(argmax$_g$ M$^g$)", fontsize=9)
    _clean(ax)
    ax.legend(handles=[Patch(color=colors[k], label=str(k)) for k in range(g)], title="mode", fontsize=7,
              title_fontsize=7, loc="upper left", bbox_to_anchor=(1.04, 1.0), borderaxespad=0,
              ncol=2 if g > 8 else 1, handlelength=1.0, labelspacing=0.3)
    ax = fig.add_subplot(grid[0, 3:cols + 1])
    mean_r = gates.reshape(-1, g).mean(0)
    x = np.arange(g)
    width = 0.4 if gates2 is not None else 0.7
    ax.bar(x - (width / 2 if gates2 is not None else 0), mean_r, width, color=colors, label="r (first pass)")
    if gates2 is not None:
        ax.bar(x + width / 2, gates2.reshape(-1, g).mean(0), width, color=colors, alpha=0.45, hatch="//",
               edgecolor="k", linewidth=0.3, label="r' (interaction pass)")
        ax.legend(fontsize=7, loc="upper right", ncol=2, frameon=False)
    ax.set(xticks=x, ylim=(0, 1.18))
    ax.set_yticks([0, 0.5, 1])
    ax.set_title("gate r of each mode g, mean over positions", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    heat = None
    vmax = mask_scale(masks)
    for k in range(g):
        ax = fig.add_subplot(grid[1 + k // cols, k % cols])
        heat = _mask(ax, image, masks[..., k], vmax)
        ax.set_title(f"mode {k}  r={mean_r[k]:.2f}\npeak M={masks[..., k].max():.3f}", fontsize=8,
                     color=colors[k])
        _clean(ax)
    _mask_colorbar(fig, heat, fig.add_subplot(grid[1:, cols]), masks.shape[0] * masks.shape[1], 8)
    fig.suptitle(title, fontsize=9)
    return fig


def draw_summary(images: np.ndarray, masks: np.ndarray, gates: np.ndarray, names: list[str], title: str):
    """Rows = images: input, part map, the G masks (each titled with its mean gate r),
    all masks on one absolute colour scale (bar on the right, uniform level marked).
    images (N, H, W, 3) in [0, 1]; masks, gates (N, h, w, G)."""
    from matplotlib.patches import Patch

    n, g = masks.shape[0], masks.shape[-1]
    colors = mode_colors(g)
    cw = 0.8  # 64 px at 80 dpi: a 128x64 ReID input drawn 1:1
    fig, grid = _figure(n, g + 3, (cw, cw * images.shape[1] / images.shape[2]), (0.05, 0.2),
                        (0.55, 1.3, 0.75, 0.4), dpi=80, width_ratios=[1] * (g + 2) + [0.15])
    vmax = mask_scale(masks)
    heat = None
    for i in range(n):
        mean_r = gates[i].reshape(-1, g).mean(0)
        axes = [fig.add_subplot(grid[i, j]) for j in range(g + 2)]
        axes[0].imshow(images[i])
        name = names[i] if len(names[i]) <= 16 else "..." + names[i][-13:]  # the end tells images apart
        axes[0].set_ylabel(name, fontsize=8)
        _part_map(axes[1], images[i], masks[i], colors)
        for k in range(g):
            heat = _mask(axes[2 + k], images[i], masks[i, ..., k], vmax)
            label = f"mode {k}\nr={mean_r[k]:.2f}" if i == 0 else f"r={mean_r[k]:.2f}"
            axes[2 + k].set_title(label, fontsize=8 if i == 0 else 7, pad=2, color=colors[k])
        if i == 0:
            axes[0].set_title("input\n", fontsize=8, pad=2)
            axes[1].set_title("part map\n", fontsize=8, pad=2)
        for ax in axes:
            _clean(ax)
    _mask_colorbar(fig, heat, fig.add_subplot(grid[:, g + 2]), masks.shape[1] * masks.shape[2], 8)
    fig.legend(handles=[Patch(color=colors[k], label=f"mode {k}") for k in range(g)], loc="lower center",
               ncol=min(g, 8), fontsize=8, frameon=False, handlelength=1.0, borderaxespad=0.2)
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / fig.get_figheight(), va="top")
    return fig


def save_png(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary name, then rename) and close it."""
    import matplotlib.pyplot as plt
    from PIL import Image

    try:
        fig.canvas.draw()
        rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])  # opaque: RGB is 1/4 smaller
        with atomic_file(path, "wb") as f:
            rgb.save(f, format="PNG", optimize=True)
    finally:
        plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="model directory (model.json + variables/) or training workdir")
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder for the PNGs")
    parser.add_argument("--block", default=None, help="StRA block (module path); default: the last one")
    parser.add_argument("--max-images", type=int, default=8, help="draw the first N images (sorted)")
    parser.add_argument("--image-size", default=None, help="H,W of the model input (default: see above)")
    parser.add_argument("--task", default=None, help="the task whose evaluation preprocessing to use when the "
                        "model records no run (default: its family's, else reid)")
    args = parser.parse_args(argv)
    if args.max_images < 1:
        parser.error(f"--max-images {args.max_images}: expected a positive integer")

    import matplotlib

    matplotlib.use("Agg")
    from stra_jax.data.reid.common import images_under
    from stra_jax.models import load_model
    from stra_jax.models.io import read_model_spec, resolve_model_dir
    from stra_jax.models.modes import extract_modes, resolve_block, stra_blocks

    try:
        size = parse_size(args.image_size) if args.image_size else None
        model_dir, workdir = resolve_model_dir(args.checkpoint)
        arch = read_model_spec(model_dir)["arch"]
        paths = images_under(args.images)[: args.max_images]
        model, variables = load_model(model_dir)
        blocks = stra_blocks(model, variables)
        if not blocks:
            raise ValueError(f"{model_dir}: model {arch!r} has no StRA blocks with mode attention "
                             "(no mode masks to draw)")
        block = resolve_block(blocks, args.block)
        image_size, task, source = input_settings(model, model_dir, workdir, size, args.task)
        task_class, config = task_and_config(model_dir, workdir, task)
        inputs, display = task_class.eval_images(config, paths, image_size)
        maps = extract_modes(model, variables, inputs, block)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{arch} at {model_dir}: block {maps.block} of {blocks}; {len(paths)} images at "
          f"{image_size[0]}x{image_size[1]} ({source}, {task} preprocessing); masks {maps.masks.shape[1:3]} x G "
          f"{maps.heads}")
    out = as_path(args.out)  # a local folder or gs://
    l_d = maps.diversity()
    for i, path in enumerate(paths):
        g2 = None if maps.gates_interaction is None else maps.gates_interaction[i]
        fig = draw_image(display[i], maps.masks[i], maps.gates[i], g2,
                         f"{path.name} - {arch} {maps.block} - L_d {l_d[i]:.2f} (0: disjoint peaks, "
                         f"{maps.heads - 1}: all uniform)")
        print(f"wrote {save_png(fig, out / f'{i:02d}_{path.stem}_modes.png')}")
    fig = draw_summary(display, maps.masks, maps.gates, [p.name for p in paths],
                       f"{arch} {maps.block}: mode masks M$^g$ (one colour scale; "
                       f"r = mean gate over positions)")
    print(f"wrote {save_png(fig, out / 'summary_modes.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
