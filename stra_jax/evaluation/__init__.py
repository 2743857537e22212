"""Evaluation: ReID distances, average query expansion, CMC / mAP / mINP (Market-1501
protocol), k-reciprocal re-ranking, and the evaluators built from ``config.evals`` (``evaluators.py``)."""
from stra_jax.evaluation.evaluators import (EVALUATORS, Evaluator, build_evaluators, list_evaluators,
                                           register_evaluator, run_evaluators)
from stra_jax.evaluation.distances import compute_distance
from stra_jax.evaluation.query_expansion import average_query_expansion
from stra_jax.evaluation.reid import ReIDResult, evaluate, evaluate_rank
from stra_jax.evaluation.rerank import re_ranking, re_ranking_features

__all__ = ["EVALUATORS", "Evaluator", "ReIDResult", "average_query_expansion", "build_evaluators",
           "compute_distance", "evaluate", "evaluate_rank", "list_evaluators", "re_ranking",
           "re_ranking_features", "register_evaluator", "run_evaluators"]
