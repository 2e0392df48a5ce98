import tensorflow as tf

from unet.training.strategy import make_strategy


def test_cpu_uses_one_replica():
    assert not tf.config.list_logical_devices("GPU")  # the test machines have none
    for gpus in (0, 1, 2):
        assert make_strategy(gpus).num_replicas_in_sync == 1
