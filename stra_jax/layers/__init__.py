"""The paper's layers, one equation per named function."""
from stra_jax.layers.local_attention import LocalAttention
from stra_jax.layers.mode_attention import ModeAttention
from stra_jax.layers.stra import StRAttention, total_diversity_loss

__all__ = ["LocalAttention", "ModeAttention", "StRAttention", "total_diversity_loss"]
