"""MS1M (insightface's ``faces_emore`` / MS1MV2: 85,742 ids, 5.8M images; lfw,
cfp_fp, agedb_30, calfw, cplfw, cfp_ff, vgg2_fp ``.bin`` beside train.rec) with
the paper's face recipe and StRA-ResNet-50, the classifier split over the
devices along its 85,742 classes (``model.shard_classifier``).

    python train.py --config configs/face_ms1m.py --workdir runs/face_ms1m \
        --config.dataset.root=/data/faces_emore
    python eval.py --config configs/face_ms1m.py --checkpoint runs/face_ms1m

Variants: ``:arcface`` (default, m 0.15 s 20), ``:cosface`` (m 0.2 s 20),
``:softmax``, ``:baseline`` (plain ResNet-50), ``:smoke``. Paper Table 4
(LFW / CPLFW / CALFW / CFP-FP / AgeDB-30): softmax ResNet50 99.1 / 94.4 /
82.0 / 89.1 / 93.1, ResNet50-StRA 99.1 / 95.0 / 82.4 / 89.5 / 93.3; cos loss
99.0 / 94.4 / 82.1 / 90.1 / 93.7 and 99.2 / 95.8 / 83.6 / 90.5 / 94.1; arc
loss 99.1 / 94.9 / 82.0 / 90.6 / 93.8 and 99.1 / 95.7 / 83.1 / 91.1 / 94.4.
``dataset.check_images`` is off here: decoding 5.8M images up front costs
about an hour of one core; a bad record is then named when the pipeline meets it.
"""
from __future__ import annotations

from configs.face_common import face_config


def get_config(arg: str | None = None):
    config = face_config("recordio", "data/faces_emore", arg)
    config.dataset.check_images = False
    config.model.shard_classifier = True
    return config
