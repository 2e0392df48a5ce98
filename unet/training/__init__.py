"""Training: the custom loop under a tf.distribute strategy, checkpoints, schedules, logs."""
