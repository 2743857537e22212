"""Image classification data (the classification task): folder-per-class sets,
the synthetic pretraining set, the ImageNet tf.data pipeline
(``pipeline.py``, imports TensorFlow) and TFDS builders streamed (``tfds.py``).

Importing this package loads neither TensorFlow nor TFDS."""
from stra_jax.data.classification.dataset import (CLASSIFICATION_READERS, ClassificationDataset, Example,
                                                  prepare_classification, read_classification_folder)
from stra_jax.data.classification.synthetic import SyntheticClassesSpec, generate_classification_folder

__all__ = ["CLASSIFICATION_READERS", "ClassificationDataset", "Example", "SyntheticClassesSpec",
           "generate_classification_folder", "prepare_classification", "read_classification_folder"]
