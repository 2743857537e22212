"""Face verification (insightface's 10-fold protocol) against a plain loop oracle."""
from __future__ import annotations

import numpy as np
import pytest

from stra_jax.evaluation.face import evaluate, far_threshold, kfold_indices


def _oracle_accuracy(emb, issame, folds=10):
    """Written from the protocol, one pair and one threshold at a time."""
    n = len(issame)
    dist = []
    for i in range(n):
        a, b = emb[2 * i], emb[2 * i + 1]
        a, b = a / np.sqrt(np.sum(a * a)), b / np.sqrt(np.sum(b * b))
        dist.append(float(np.sum((a - b) ** 2)))
    sizes = [n // folds + (1 if f < n % folds else 0) for f in range(folds)]
    start, accs, best = 0, [], []
    thresholds = [t / 100 for t in range(400)]
    for size in sizes:
        test = list(range(start, start + size))
        train = [i for i in range(n) if i not in test]
        start += size

        def acc(idx, t):
            return sum((dist[i] < t) == bool(issame[i]) for i in idx) / len(idx)

        scores = [acc(train, t) for t in thresholds]
        t_best = thresholds[scores.index(max(scores))]
        best.append(t_best)
        accs.append(acc(test, t_best))
    return float(np.mean(accs)), float(np.std(accs)), float(np.mean(best))


@pytest.mark.parametrize("pairs,dim,seed", [(60, 8, 0), (57, 4, 1), (200, 16, 2)])
def test_accuracy_matches_the_loop_oracle(pairs, dim, seed):
    rng = np.random.default_rng(seed)
    issame = rng.random(pairs) < 0.5
    base = rng.standard_normal((pairs, dim))
    other = np.where(issame[:, None], base + 0.7 * rng.standard_normal((pairs, dim)),
                     rng.standard_normal((pairs, dim)))
    emb = np.empty((2 * pairs, dim))
    emb[0::2], emb[1::2] = base, other
    got = evaluate(emb, issame)
    acc, std, thr = _oracle_accuracy(emb, issame)
    assert got["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert got["accuracy_std"] == pytest.approx(std, abs=1e-12)
    assert got["threshold"] == pytest.approx(thr, abs=1e-9)
    assert 0.6 < got["accuracy"] <= 1.0  # informative embeddings beat chance
    assert got["tpr"].shape == got["fpr"].shape == (400,)


def test_perfect_and_random_embeddings():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((100, 8))
    issame = np.arange(100) % 2 == 0
    emb = np.empty((200, 8))
    emb[0::2] = base
    emb[1::2] = np.where(issame[:, None], base, -base)  # same: identical; different: opposite
    out = evaluate(emb, issame)
    assert out["accuracy"] == 1.0 and out["accuracy_std"] == 0.0
    # No threshold below 4 lets a different pair through (they sit at distance 4), so the
    # FAR target is never reached: the protocol then uses threshold 0, hence VAL 0.
    assert out["val"] == 0.0 and out["far"] == 0.0
    noise = evaluate(rng.standard_normal((200, 8)), issame)
    assert 0.3 < noise["accuracy"] < 0.7


def test_kfold_sizes_and_far_threshold():
    assert [len(f) for f in kfold_indices(23, 10)] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert np.concatenate(kfold_indices(23, 10)).tolist() == list(range(23))
    thresholds = np.arange(0, 1, 0.1)
    far = np.array([0, 0, 0, 0.1, 0.1, 0.3, 0.5, 0.5, 1, 1])
    # Distinct FARs keep their first thresholds: (0.1, 0.3) and (0.3, 0.5); 0.2 lies halfway.
    assert far_threshold(far, thresholds, 0.2) == pytest.approx(0.4)
    assert far_threshold(far * 0, thresholds, 1e-3) == 0.0  # never reached


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"embeddings shape \(5, 4\)"):
        evaluate(np.ones((5, 4)), np.ones(2, bool))
    with pytest.raises(ValueError, match=r"issame shape \(3,\): expected \(2,\)"):
        evaluate(np.ones((4, 4)), np.ones(3, bool))
    with pytest.raises(ValueError, match="nrof_folds=10"):
        evaluate(np.ones((8, 4)), np.ones(4, bool))
