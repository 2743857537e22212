"""stra-jax: Structure-Regularized Attention (StRAttention) in JAX / Flax Linen."""
from stra_jax.layers import LocalAttention, ModeAttention, StRAttention, total_diversity_loss

__version__ = "0.1.0"
__all__ = ["LocalAttention", "ModeAttention", "StRAttention", "total_diversity_loss", "__version__"]
