"""Write ``notebooks/quickstart.ipynb`` (no outputs) from the cell sources below.

    python notebooks/make_quickstart.py

The notebook is generated so that its source is reviewable here and the saved
copy stays small and diff-friendly. Edit this file, rerun it, commit both.
``tests/test_notebook.py`` executes the notebook top to bottom; code cells carry
a tag (``metadata.tags``) that the test uses to find their outputs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

# Colab opens a notebook from GitHub by its path: fill in your fork's owner and repository name.
COLAB_URL = "https://colab.research.google.com/github/<owner>/<repo>/blob/main/notebooks/quickstart.ipynb"

INTRO = f"""\
# stra-jax quickstart: Structure-Regularized Attention for person re-identification

To open this notebook in Colab from your fork of the repository: in Colab, *File > Open notebook > GitHub*, or
`{COLAB_URL}` with your fork's owner and repository name.

This notebook runs the whole stra-jax workflow at toy size, on CPU in about a minute:

1. installs the package (in Colab) and shows the devices JAX sees;
2. generates the built-in **synthetic ReID set** (Market-1501 layout) and shows a few identities across cameras;
3. **trains** a narrow StRA-ResNet on it with the project's training loop (`train_and_evaluate`, what `train.py` runs)
   and prints mAP / rank-1;
4. **evaluates** the trained model again as `eval.py` does and plots the training curves;
5. draws the **mode maps** of the last StRA block (paper Fig. 4);
6. **imports a PyTorch state dict** (torchvision's ResNet-50) with the project's importer and computes an embedding.

Everything is written under one working folder (`STRA_QUICKSTART_DIR`, default `./stra_quickstart`); nothing is
written into the repository. The numbers at this size (a few training steps on 36 images) only show that the
pipeline runs; the real demo (`python train.py --config configs/reid_synthetic.py --workdir runs/synthetic`) and
the dataset configs are in "Next steps" at the end.
"""

RUNTIMES = """\
### CPU, GPU or TPU

The code is the same on every backend: the train step is one `jax.jit` with the global batch sharded over all
devices (a `('data',)` mesh, `NamedSharding`), parameters replicated and BatchNorm statistics global; evaluation
shards its batches the same way. Only the JAX build differs.

* **TPU** (Colab): *Runtime > Change runtime type > TPU*, then run in a cell, before anything imports JAX:

  ```
  !pip install -q "jax[tpu]>=0.10,<0.11"
  ```

  and restart (*Runtime > Restart session*); then run the notebook from the top.
* **GPU** (Colab): *Runtime > Change runtime type > T4 / L4 / A100 GPU*, then

  ```
  !pip install -q "jax[cuda12]>=0.10,<0.11"
  ```

  and restart the session.

`jax.devices()` below shows what JAX found. With several devices the global batch (`config.train.batch_size`)
and the evaluation batch (`config.evals.reid.batch_size`) must be multiples of the device count (the smoke
sizes, 8 and 16, suit 1, 2, 4 or 8 devices).
"""

INSTALL_MD = """\
## 1. Install

In Colab (or any environment where `stra_jax` is not importable and this notebook is not inside a checkout) the
cell clones your fork (set `REPO_URL` in the cell, or the environment variable `STRA_JAX_GIT_URL`) into `./stra-jax`
and installs it with its dependencies (`pip install -e ./stra-jax`). Inside a
checkout it uses the checkout (install the dependencies once with `pip install -r requirements.txt`); where
`stra_jax` is already importable it installs nothing. If Colab asks to restart the session after the install
(pip upgraded a package that was already loaded), restart and run all cells again: this cell then finds the
clone and skips the install.
"""

INSTALL = r'''
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow (input pipeline only) is quiet
# Only used where no checkout is found (Colab): the git URL of your fork of the repository.
REPO_URL = os.environ.get("STRA_JAX_GIT_URL", "https://github.com/<owner>/<repo>")


def is_repo(path):
    return path is not None and (path / "stra_jax" / "__init__.py").is_file() \
        and (path / "configs" / "reid_synthetic.py").is_file()


def find_repo():
    """The stra-jax checkout: $STRA_JAX_REPO, else the folder stra_jax is imported from,
    else the current folder or one above it, else a clone in ./stra-jax."""
    if os.environ.get("STRA_JAX_REPO"):
        return Path(os.environ["STRA_JAX_REPO"]).resolve()
    spec = importlib.util.find_spec("stra_jax")
    if spec is not None and spec.origin:
        installed = Path(spec.origin).resolve().parents[1]
        if is_repo(installed):
            return installed
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents, cwd / "stra-jax"):
        if is_repo(candidate):
            return candidate
    return None


REPO = find_repo()
importable = importlib.util.find_spec("stra_jax") is not None
if REPO is None:  # Colab: clone (the configs and eval.py are in the repository) and install
    if "<owner>" in REPO_URL:
        raise RuntimeError("no stra-jax checkout found: set REPO_URL at the top of this cell to your fork's git URL "
                           "(or STRA_JAX_REPO to a checkout) and run the cell again")
    subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "stra-jax"], check=True)
    REPO = Path("stra-jax").resolve()
    if not importable:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(REPO)], check=True)
elif importable:
    print("stra_jax is importable: nothing to install")
else:
    print(f"using the checkout {REPO} (install its dependencies once: pip install -r requirements.txt)")
if not is_repo(REPO):
    raise FileNotFoundError(f"no stra-jax checkout found (got {REPO}); set STRA_JAX_REPO to the repository root")
# The configs (configs/*.py import configs.common) and eval.py live in the repository root, not in the package.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import jax

print(f"repository: {REPO}")
print(f"python {sys.version.split()[0]} ({sys.executable}), jax {jax.__version__}")
print("devices:", jax.devices())
'''

DATA_MD = """\
## 2. The synthetic ReID set

`configs/reid_synthetic.py` is the built-in demo; its `smoke` variant is a tiny version (12 identities, 6 images
each, 64x32 pixels, a network of width 8). Configs are plain Python files with `get_config(arg)`
(`--config configs/reid_synthetic.py:smoke` on the command line); here the file is loaded with `importlib`.

`prepare_dataset` generates the set where training will look for it (`WORKDIR/data/synthetic`, in the
Market-1501 layout: `bounding_box_train/`, `query/`, `bounding_box_test/`, file names `PPPP_cCsS_FFFFFF_BB.jpg`)
and reads it back. Each identity is a combination of body parts (head, upper and lower clothing, shoes, bag);
each camera has its own colour cast, blur and background.
"""

DATA = r'''
import importlib.util
import json
import tempfile
from collections import defaultdict

from absl import logging as absl_logging

absl_logging.set_verbosity(absl_logging.WARNING)  # as train.py: orbax logs every save at INFO


def load_config(path, variant=None):
    """configs/<exp>.py[:variant] -> its ConfigDict (what --config does in train.py / eval.py)."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def default_work_dir():
    cwd = Path.cwd().resolve()
    if cwd == REPO or REPO in cwd.parents:  # never write into the checkout
        return Path(tempfile.gettempdir()) / "stra_quickstart"
    return cwd / "stra_quickstart"


WORK = Path(os.environ.get("STRA_QUICKSTART_DIR") or default_work_dir()).resolve()
RUN = WORK / "run"  # the training workdir
WORK.mkdir(parents=True, exist_ok=True)
print(f"writing under {WORK}")

config = load_config(REPO / "configs" / "reid_synthetic.py", "smoke")
print("synthetic set:", config.dataset.synthetic.to_dict())

from stra_jax.data.reid import prepare_dataset

data_root = RUN / "data" / config.dataset.name  # where training finds it (config.dataset.root is empty)
dataset = prepare_dataset("synthetic", data_root, config.dataset.synthetic.to_dict())
print(dataset.summary())
'''

GRID = r'''
import matplotlib
import matplotlib.pyplot as plt
from IPython.display import Image, display
from PIL import Image as PILImage

matplotlib.use("Agg")  # draw to files, show them with IPython.display (the same on every frontend)

# Test identities: their query and gallery images, one per camera (file name: pid_cCAMsSEQ_frame_box.jpg).
by_pid = defaultdict(dict)
for folder in ("query", "bounding_box_test"):
    for path in sorted((data_root / folder).glob("*.jpg")):
        pid, cam = path.name.split("_")[:2]
        if int(pid) > 0:  # 0: distractors, -1: junk
            by_pid[int(pid)].setdefault(int(cam[1:cam.index("s")]), path)
pids = sorted(by_pid, key=lambda p: (-len(by_pid[p]), p))[:4]
cols = max(len(by_pid[p]) for p in pids)
fig, axes = plt.subplots(len(pids), cols, figsize=(1.1 * cols, 2.1 * len(pids)), squeeze=False)
for row, pid in enumerate(pids):
    for col in range(cols):
        ax = axes[row, col]
        ax.axis("off")
        if col < len(by_pid[pid]):
            cam, path = sorted(by_pid[pid].items())[col]
            ax.imshow(PILImage.open(path))
            ax.set_title(f"id {pid} cam {cam}", fontsize=7)
fig.suptitle("synthetic ReID set:\ntest identities (rows) across cameras", fontsize=9)
fig.tight_layout()
fig.savefig(WORK / "synthetic_ids.png", dpi=110)
plt.close(fig)
display(Image(filename=str(WORK / "synthetic_ids.png")))
'''

TRAIN_MD = """\
## 3. Train

`train_and_evaluate(config, workdir)` is what `python train.py --config ... --workdir ...` runs: it builds the
task (data, loss, evaluators), the model and the optimiser, trains with a jitted step sharded over all devices,
evaluates, keeps checkpoints (rerunning resumes) and writes evaluable model directories (`model_best`,
`model_last`), `metrics.jsonl`, TensorBoard files and `final_metrics.json`.

The smoke config is cut further here so that the notebook stays quick on a CPU: no frozen epochs (one compiled
train step instead of two), two epochs, an evaluation after each. Set `EPOCHS` higher (and drop the
overrides) for a longer run; on a GPU/TPU runtime the full demo config (`load_config(..., None)`, 60 epochs) takes
minutes. Rerunning the cell resumes the run in `WORKDIR` (a finished one is evaluated again); after changing the
network or the data set, remove `WORKDIR` (or set `RUN` to a new folder) first: a workdir holding another
architecture is refused.
"""

TRAIN = r'''
from stra_jax.training.loop import train_and_evaluate

EPOCHS = 2  # 4 steps of 8 images each
config.train.update(epochs=EPOCHS, frozen_epochs=0, eval_every_epochs=1, log_every=2)
final = train_and_evaluate(config, RUN)

final = json.loads((RUN / "final_metrics.json").read_text())  # the same dict, as the loop wrote it
# Chance rank-1: the share of true matches among the gallery images each query is ranked against
# (the protocol drops the query identity's images from the query's own camera).
chance = sum(sum(g.pid == q.pid for g in dataset.gallery)
             / sum(not (g.pid == q.pid and g.camid == q.camid) for g in dataset.gallery)
             for q in dataset.query) / len(dataset.query)
print(f"final: mAP {100 * final['reid/mAP']:.1f}%  rank-1 {100 * final['reid/rank1']:.1f}%  "
      f"({final['reid/num_queries']} queries; chance rank-1 about {100 * chance:.0f}%)")
'''

EVAL_MD = """\
## 4. Evaluate again, and the training curves

`eval.run(config, checkpoint, output)` is `python eval.py --config configs/reid_synthetic.py:smoke --checkpoint
WORKDIR`: it loads the workdir's `model_best` (else `model_last`), runs the config's evaluators on the same
query/gallery and writes the metrics and the config to a JSON file (by default `eval_synthetic.json` beside the
model). `model_best` is the evaluated state with the best mAP, not necessarily the last one, and the numbers equal
the ones training logged for it (it says so if they do not).
"""

EVAL = r'''
import eval as eval_script  # eval.py in the repository root

payload = eval_script.run(config, str(RUN), output=str(WORK / "eval_synthetic.json"))
metrics = payload["metrics"]
print(f"eval.py: mAP {100 * metrics['reid/mAP']:.1f}%  rank-1 {100 * metrics['reid/rank1']:.1f}%  "
      f"mINP {100 * metrics['reid/mINP']:.1f}%  (model {Path(payload['checkpoint']).name})")
'''

CURVES = r'''
from stra_jax.tools import plot_metrics

# python -m stra_jax.tools.plot_metrics WORKDIR [WORKDIR ...] --out curves.png --labels ...
series = plot_metrics.read_metrics(RUN / "metrics.jsonl")
curves = plot_metrics.plot([series], ["StRA (smoke)"], WORK / "curves.png")
display(Image(filename=str(curves)))
'''

MODES_MD = """\
## 5. Mode maps (paper Fig. 4)

Each StRA block factorises its feature map into G *modes*: `ModeAttention` computes a mask M^g over the positions
for each mode and a gate r per mode. `stra_jax.tools.visualize_modes` draws them for a folder of images (here:
one test identity seen by several cameras): the input, the argmax "part map" and one heat map per mode, titled
with its mean gate. The command-line form is

```
python -m stra_jax.tools.visualize_modes --checkpoint WORKDIR --images FOLDER --out OUT --max-images 6
```

After a few training steps the masks are close to uniform; after the full demo run they are sharp and several
sit on the same body part in every view (the repository's docs/results.md has such a run).
"""

MODES = r'''
import shutil

from stra_jax.tools import visualize_modes

pid = pids[0]  # the identity seen by the most cameras, one image per camera
images_dir = WORK / "fig4_images"
shutil.rmtree(images_dir, ignore_errors=True)
images_dir.mkdir()
for cam, path in sorted(by_pid[pid].items())[:6]:
    shutil.copy(path, images_dir / path.name)

status = visualize_modes.main(["--checkpoint", str(RUN), "--images", str(images_dir),
                               "--out", str(WORK / "fig4"), "--max-images", "6"])
assert status == 0, "visualize_modes failed (see the message above)"
display(Image(filename=str(WORK / "fig4" / "summary_modes.png")))
'''

CONVERT_MD = """\
## 6. Import PyTorch weights

The importer (`stra_jax.convert`) maps PyTorch state dicts to Flax variables: torchvision's ResNet-50 and
MobileNetV2, the authors' StRA-ResNet-50 checkpoints (torchreid-style `{"state_dict": ...}` files with `module.`
prefixes work), Cadene's SE-ResNet-50; `.pth` (needs torch) and `.safetensors` files. Here torchvision's
`resnet50(weights=None)` (random weights, nothing is downloaded; torch is preinstalled on Colab) is saved to a
`.pth`, converted with `strict=True` (every tensor must match), and its 2048-d GAP embedding is compared with
PyTorch's on one small image. Then the same weights go into StRA-ResNet-50 with `strict=False`, as ImageNet
weights initialise it in training (`--config.init_from=resnet50-19c8e357.pth`): the report lists what stayed at
initialisation (the last stage's attention and the ReID head). On the command line:

```
python -m stra_jax.convert resnet50.pth OUT_DIR --arch resnet50 --num-classes 1000
```

writes a model directory (`model.json` + an orbax checkpoint) that `eval.py`, `extract_features` and
`init_from` read.
"""

CONVERT = r'''
import logging

import numpy as np

try:
    import torch
    import torchvision
except (ImportError, RuntimeError) as err:  # RuntimeError: a torchvision wheel that does not match torch
    torch = None
    print(f"skipped: this cell needs torch and torchvision ({type(err).__name__}: {err}); "
          "pip install torch torchvision, then rerun it")

if torch is not None:
    import jax.numpy as jnp

    from stra_jax import convert

    torch.manual_seed(0)
    torch_model = torchvision.models.resnet50(weights=None).eval()
    pth = WORK / "resnet50_random.pth"
    torch.save(torch_model.state_dict(), pth)

    state_dict = convert.read_state_dict(pth)
    model, variables, report = convert.from_torch_state_dict(state_dict, arch="resnet50", num_classes=1000,
                                                             return_report=True)
    print("resnet50, strict:", report.describe())

    # The smallest input that keeps all five stride-2 steps: 32x32 (a 1x1 map before the GAP). NHWC, JAX side.
    image = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, image)
    embedding = np.asarray(out["embedding"])
    print(f"embedding: shape {embedding.shape}, logits {tuple(out['logits'].shape)}")
    torch_model.fc = torch.nn.Identity()  # PyTorch's GAP feature, NCHW
    with torch.no_grad():
        reference = torch_model(torch.from_numpy(image).permute(0, 3, 1, 2)).numpy()
    print(f"max |JAX - PyTorch| = {np.abs(embedding - reference).max():.2e} (largest value {np.abs(reference).max():.1f})")

    logging.getLogger("stra_jax.convert").setLevel(logging.ERROR)  # it logs the whole report; summarised below
    _, _, partial = convert.from_torch_state_dict(state_dict, arch="stra_resnet50", num_classes=751, strict=False,
                                                  return_report=True)
    modules = sorted({n.split(".conv2.")[0] + ".conv2 (StRA)" if ".conv2." in n else n.rsplit(".", 1)[0]
                      for n in partial.initialised})
    print(f"\nImageNet layout into stra_resnet50 (strict=False): {len(partial.loaded)} tensors loaded, "
          f"{len(partial.unexpected)} unused ({', '.join(partial.unexpected)}), {len(partial.initialised)} left at "
          f"initialisation, in: {', '.join(modules)}")
    # print(partial.describe())  # every name
'''

NEXT = """\
## Next steps

* **The full synthetic demo** (about 3-12 minutes on a 2-core CPU, seconds per epoch on a GPU/TPU):
  `python train.py --config configs/reid_synthetic.py --workdir runs/synthetic`, then
  `python eval.py --config configs/reid_synthetic.py --checkpoint runs/synthetic`.
* **Real data**: extract Market-1501 and train the paper's recipe from ImageNet weights:

  ```
  python train.py --config configs/reid_market.py --workdir runs/market \\
      --config.dataset.root=/data/Market-1501-v15.09.15 --config.init_from=resnet50-19c8e357.pth
  ```

  `configs/reid_duke.py`, `reid_cuhk03.py`, `reid_msmt17.py` and `reid_custom.py` (your own data: a folder per
  identity or a CSV) work the same way; `:authors` selects the released scripts' recipe and the Table 3 ablations
  are variants (`:local_only`, `:no_interaction`, `:baseline`, ...).
* **TFDS and buckets** (TPU VMs): build a dataset once from your extracted copy,
  `python -m stra_jax.tools.build_tfds market1501 --manual_dir /data/Market-1501-v15.09.15 --data_dir gs://BUCKET/tfds`,
  then train with `--config.dataset.source=tfds --config.dataset.data_dir=gs://BUCKET/tfds
  --workdir gs://BUCKET/runs/market` (the same batches and metrics as the folder source).
* **Export** a trained model for serving: `python -m stra_jax.tools.export --checkpoint WORKDIR --format
  savedmodel --out OUT` (TF Serving) or `--format stablehlo` (`jax.export`).
* **Installed commands** after `pip install .`: `stra-train`, `stra-eval`, `stra-export`, `stra-build-tfds`, ...
* **Face recognition**, the paper's second task: `python train.py --config configs/face_synthetic.py --workdir
  runs/face`.
* The repository's README has the module API (`StRAttention`), the model zoo and the commands that reproduce the
  paper's tables; `docs/` has a page per topic, and `docs/results.md` what was measured.
"""


def build() -> nbformat.NotebookNode:
    def code(source: str, tag: str):
        return new_code_cell(source.strip("\n"), metadata={"tags": [tag]})

    cells = [
        new_markdown_cell(INTRO.strip()),
        new_markdown_cell(RUNTIMES.strip()),
        new_markdown_cell(INSTALL_MD.strip()),
        code(INSTALL, "install"),
        new_markdown_cell(DATA_MD.strip()),
        code(DATA, "data"),
        code(GRID, "data-picture"),
        new_markdown_cell(TRAIN_MD.strip()),
        code(TRAIN, "train"),
        new_markdown_cell(EVAL_MD.strip()),
        code(EVAL, "eval"),
        code(CURVES, "curves"),
        new_markdown_cell(MODES_MD.strip()),
        code(MODES, "modes"),
        new_markdown_cell(CONVERT_MD.strip()),
        code(CONVERT, "convert"),
        new_markdown_cell(NEXT.strip()),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["colab"] = {"provenance": [], "name": "quickstart.ipynb"}
    # Deterministic cell ids: regenerating an unchanged notebook gives an identical file.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path(__file__).with_name("quickstart.ipynb")
    nb = build()
    nbformat.validate(nb)
    out.write_text(nbformat.writes(nb) + "\n")
    print(f"wrote {out} ({len(nb.cells)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
