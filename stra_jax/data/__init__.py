"""Datasets, the synthetic generator and the tf.data input pipeline."""
