"""Model zoo (NHWC, Flax Linen): the model contract, the registry, heads, checkpoints.

The model contract, which every registered family follows and the trainer,
the tasks, the evaluators and the tools rely on:

* ``model.apply(variables, images, train=..., frozen=(), mutable=...)`` with
  ``images`` (B, H, W, 3) float32, normalised; ``variables`` =
  ``{"params", "batch_stats"}`` (``batch_stats`` may be empty).
* Returns a dict of float32 arrays: ``features`` (B, C) the pooled trunk
  output, ``embedding`` (B, D) the test-time feature, and when the model has a
  classifier either ``logits`` (B, num_classes) or ``class_weights``
  (D, num_classes) for margin losses.
* ``num_classes`` is a constructor option (0 = no classifier); tasks set it.
* ``train=True`` may update ``batch_stats`` and sow regularisers into the
  ``losses`` collection (StRA's L_d); it may draw from a ``"dropout"`` rng.
* ``frozen``: names from the family's ``FREEZABLE`` class attribute; those
  groups' BatchNorms stay in inference mode, and the family's
  ``frozen_param_mask(params, groups)`` method names their parameters for the
  optimiser. Families without pretrained groups omit both.

Add a family: a Linen module in its own file ending with one ``register_model``
line per architecture, imported below (importing a family registers its
architectures in ``MODELS``; see CONTRIBUTING.md).
"""
from stra_jax.models.face_resnet import FaceResNet
from stra_jax.models.heads import HEADS, Classifier, FaceHead, ReIDHead, make_head
from stra_jax.models.io import abstract_variables, init_variables, load_model, save_model
from stra_jax.models.registry import (MODELS, create_model, freezable_groups, frozen_param_mask, get_entry,
                                      list_models, model_kwargs, register_model)
from stra_jax.models.mobilenetv2 import MobileNetV2
from stra_jax.models.nonlocal_resnet import NonLocalResNet
from stra_jax.models.resnet import FREEZABLE, Bottleneck, ResNet, ResNetBase, ResNetTrunk
from stra_jax.models.sasa_resnet import SASAResNet
from stra_jax.models.se_resnet import SEResNet
from stra_jax.models.stra_options import StRAOptions

__all__ = ["FREEZABLE", "HEADS", "MODELS", "Bottleneck", "Classifier", "FaceHead", "FaceResNet", "MobileNetV2",
           "NonLocalResNet", "ReIDHead", "ResNet", "ResNetBase", "ResNetTrunk", "SASAResNet", "SEResNet",
           "StRAOptions", "abstract_variables", "create_model", "freezable_groups", "frozen_param_mask", "get_entry",
           "init_variables", "list_models", "load_model", "make_head", "model_kwargs", "register_model",
           "save_model"]
