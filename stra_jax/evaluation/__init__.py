"""Re-identification evaluation: distances, CMC / mAP / mINP (Market-1501 protocol), k-reciprocal re-ranking."""
from stra_jax.evaluation.reid import ReIDResult, compute_distance, evaluate, evaluate_rank
from stra_jax.evaluation.rerank import re_ranking

__all__ = ["ReIDResult", "compute_distance", "evaluate", "evaluate_rank", "re_ranking"]
