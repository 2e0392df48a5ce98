"""Choosing the tf.distribute strategy from the number of GPUs asked for."""

from __future__ import annotations

import logging

import tensorflow as tf

log = logging.getLogger(__name__)


def make_strategy(gpus: int) -> tf.distribute.Strategy:
    """MirroredStrategy over `gpus` visible GPUs when more than one; else the default strategy."""
    available = tf.config.list_logical_devices("GPU")
    if gpus > 1:
        if len(available) < gpus:
            log.warning("train.gpus=%d but %d GPU(s) visible; using %d", gpus, len(available), len(available))
        devices = [d.name for d in available[:gpus]]
        if len(devices) > 1:
            return tf.distribute.MirroredStrategy(devices)
    if available and gpus >= 1:
        return tf.distribute.OneDeviceStrategy(available[0].name)
    return tf.distribute.get_strategy()
