"""tf.data input: TFRecord shards of preprocessed cases, patch sampling, augmentation."""
