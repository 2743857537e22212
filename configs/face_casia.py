"""CASIA-WebFace (insightface's ``faces_webface_112x112``: 10,572 ids, 494,414
images; lfw.bin, cfp_fp.bin, agedb_30.bin beside train.rec) with the paper's
face recipe and StRA-ResNet-50 (ArcFace m 0.15 s 20 + 0.1 x L_d).

    python train.py --config configs/face_casia.py --workdir runs/face_casia \
        --config.dataset.root=/data/faces_webface_112x112
    python eval.py --config configs/face_casia.py --checkpoint runs/face_casia

Variants: ``:arcface`` (default), ``:cosface`` (m 0.2 s 20), ``:softmax``,
``:baseline`` (plain ResNet-50 with the same stem and head; combine, e.g.
``:baseline,cosface``), ``:smoke``. The paper's Table 4 trains on several
public sets combined (CASIA-WebFace, CelebA, CACD, ...) and reports, for
ResNet50-StRA with ArcFace: LFW 99.1, CPLFW 95.7, CALFW 83.1, CFP-FP 91.1,
AgeDB-30 94.4 (ResNet-50: 99.1 / 94.9 / 82.0 / 90.6 / 93.8); those numbers
are not expected from CASIA alone.
"""
from __future__ import annotations

from configs.face_common import face_config


def get_config(arg: str | None = None):
    return face_config("recordio", "data/faces_webface_112x112", arg)
