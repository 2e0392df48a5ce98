import tensorflow as tf

from unet.training.strategy import make_strategy


def test_replicas_follow_the_visible_gpus():
    visible = len(tf.config.list_logical_devices("GPU"))
    assert make_strategy(0).num_replicas_in_sync == 1
    assert make_strategy(1).num_replicas_in_sync == 1
    # Asking for more GPUs than visible falls back to what there is (CPU: one replica).
    assert make_strategy(2).num_replicas_in_sync == max(1, min(2, visible))
