"""The built-in face demo: the synthetic part-structured face set, a narrow
face StRA-ResNet trained from scratch with ArcFace + 0.1 x L_d.

    python train.py --config configs/face_synthetic.py --workdir runs/face
    python eval.py --config configs/face_synthetic.py --checkpoint runs/face   # table, JSON, ROC PNGs

Generates the set into WORKDIR/data/synthetic_faces when absent (insightface's
layout: train.rec/train.idx with the identity header, synthetic_lfw.bin and
synthetic_cfp.bin), trains and verifies on both pair sets every few epochs,
keeping the best model by mean verification accuracy (chance is 50%; run time
and accuracies: docs/results.md). Variants as the dataset configs (``:cosface``,
``:softmax``, ``:baseline``), and ``:smoke`` (tiny, for tests).
"""
from __future__ import annotations

import ml_collections

from configs.common import parse_variants
from configs.face_common import FACE_VARIANTS, face_config


def get_config(arg: str | None = None):
    config = face_config("synthetic_faces", "", arg, known=FACE_VARIANTS)
    config.dataset.synthetic = ml_collections.ConfigDict(dict(
        seed=0, num_train_ids=200, images_per_id=24, num_pair_ids=60, pairs_per_set=600, size=112))
    if "smoke" in parse_variants(arg, FACE_VARIANTS):  # face_config already made the run tiny
        config.dataset.synthetic.update(num_train_ids=6, images_per_id=6, num_pair_ids=4, pairs_per_set=20, size=32)
        return config
    config.model.kwargs = dict(width=12, stage_sizes=(1, 1, 2, 1), stem_stride=2, embedding_dim=128)
    config.evals.face.update(batch_size=100)
    config.train.update(epochs=10, batch_size=64, lr=0.1, log_every=25, eval_every_epochs=5)
    config.train.schedule.milestones = (6, 8)
    return config
