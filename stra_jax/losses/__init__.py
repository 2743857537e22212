"""Losses: registered loss terms that ``config.train.losses`` weights into the
training objective, and the functions they are made of.

* ``registry.py``: ``LOSSES`` (name -> term factory), ``LossContext``, ``loss_term``;
* ``objective.py``: ``build_objective`` (weighted terms -> objective),
  ``train_objective`` (from ``config.train``), ``check_legacy_keys``;
* ``classification.py``: cross-entropy, CosFace / ArcFace logits, the "ce" term;
* ``margin.py``: (class-sharded) margin cross-entropy, the "softmax",
  "cosface" and "arcface" terms;
* ``diversity.py``: StRA's L_d, the "diversity" term;
* ``metric.py``: batch-hard triplet, center and pairwise circle losses (the
  ReID bag of tricks), the "triplet", "center" and "circle" terms.

Importing the package registers its terms. A new term is a function
registered with ``@LOSSES.register("name")`` (see ``registry.py``).
"""
from stra_jax.losses.classification import (arcface_logits, ce_term, check_logits_labels, cosface_logits, cosines,
                                            cross_entropy, identity_loss, identity_objective, mean_cross_entropy)
from stra_jax.losses.diversity import diversity_term, mean_diversity
from stra_jax.losses.margin import (MARGIN_LOSSES, check_margin_settings, margin_cross_entropy, margin_logits,
                                    margin_objective, margin_term, sharded_margin_cross_entropy, softmax_logits,
                                    straight_through_logits)
from stra_jax.losses.metric import (center_loss, center_term, check_metric_labels, circle_loss, circle_term,
                                    hard_example_mining, l2_normalize, metric_features, pairwise_euclidean,
                                    triplet_loss, triplet_term)
from stra_jax.losses.objective import LEGACY_KEYS, build_objective, check_legacy_keys, train_objective
from stra_jax.losses.registry import LOSSES, LossContext, Objective, Term, TermFactory, loss_term

__all__ = ["LEGACY_KEYS", "LOSSES", "MARGIN_LOSSES", "LossContext", "Objective", "Term", "TermFactory",
           "arcface_logits", "build_objective", "ce_term", "center_loss", "center_term", "check_legacy_keys",
           "check_logits_labels", "check_margin_settings", "check_metric_labels", "circle_loss", "circle_term",
           "cosface_logits", "cosines", "cross_entropy", "diversity_term", "hard_example_mining", "identity_loss",
           "identity_objective", "l2_normalize", "loss_term", "margin_cross_entropy", "margin_logits",
           "margin_objective", "margin_term", "mean_cross_entropy", "mean_diversity", "metric_features",
           "pairwise_euclidean", "sharded_margin_cross_entropy", "softmax_logits", "straight_through_logits",
           "train_objective", "triplet_loss", "triplet_term"]
