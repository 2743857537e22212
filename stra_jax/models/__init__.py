"""Model zoo: ResNet-50 and StRA-ResNet-50 (NHWC, Flax Linen)."""
from stra_jax.models.io import abstract_variables, init_variables, load_model, save_model
from stra_jax.models.registry import create_model, list_models, model_kwargs
from stra_jax.models.resnet import FREEZABLE, Bottleneck, ResNet, frozen_param_mask

__all__ = ["FREEZABLE", "Bottleneck", "frozen_param_mask", "ResNet", "abstract_variables", "create_model", "init_variables", "list_models", "load_model",
           "model_kwargs", "save_model"]
