"""The paper's layers, one equation per named function."""
from stra_jax.layers.local_attention import LocalAttention
from stra_jax.layers.mode_attention import ModeAttention
from stra_jax.layers.nonlocal_block import NonLocalBlock
from stra_jax.layers.sasa import SASA
from stra_jax.layers.se import SqueezeExcitation
from stra_jax.layers.stra import StRAttention, total_diversity_loss

# SqueezeExcitation, NonLocalBlock and SASA are the comparison networks' modules (Table 2).
__all__ = ["SASA", "LocalAttention", "ModeAttention", "NonLocalBlock", "SqueezeExcitation", "StRAttention",
           "total_diversity_loss"]
