"""Image classification data: folder-per-class sets, the synthetic pretraining set, the tf.data pipeline."""
