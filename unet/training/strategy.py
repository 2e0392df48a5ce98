"""Choosing the tf.distribute strategy from the number of GPUs and nodes asked for."""

from __future__ import annotations

import logging
import os

import tensorflow as tf

log = logging.getLogger(__name__)


def make_strategy(gpus: int, nodes: int = 1) -> tf.distribute.Strategy:
    """The strategy for `gpus` GPUs per process and `nodes` processes (one per node).

    nodes > 1: MultiWorkerMirroredStrategy over the tasks of the current `srun` step (see
    `slurm_cluster_resolver`). nodes == 1: MirroredStrategy over `gpus` visible GPUs when more
    than one, one GPU when one is visible, else the default strategy.
    """
    if nodes > 1:
        return multiworker_strategy(gpus, nodes)
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


def multiworker_strategy(gpus: int, nodes: int) -> tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirroredStrategy over the tasks of the current `srun` step, `gpus` GPUs each
    (NCCL between GPUs, gRPC rings between CPU workers); `nodes` is what the config asked for."""
    # The resolver sets this task's CUDA_VISIBLE_DEVICES: before anything touches a GPU.
    resolver = slurm_cluster_resolver(gpus)
    implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL if gpus > 0
                      else tf.distribute.experimental.CommunicationImplementation.RING)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver,
        communication_options=tf.distribute.experimental.CommunicationOptions(implementation=implementation))
    workers = len(resolver.cluster_spec().as_dict().get("worker", []))
    if workers != nodes:
        log.warning("train.nodes=%d but the srun step has %d task(s)", nodes, workers)
    return strategy


def slurm_cluster_resolver(gpus: int, port_base: int | None = None) -> tf.distribute.cluster_resolver.ClusterResolver:
    """The workers of the current `srun` step (one per task) and this task's place among them.

    Reads SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST and SLURM_STEP_TASKS_PER_NODE.
    `gpus` is per task; unless SLURM already set CUDA_VISIBLE_DEVICES, resolving the cluster sets
    it to this task's share of its node's GPUs. Ports start at `port_base`, by default derived
    from SLURM_JOB_ID so that two trainings sharing a node do not collide.
    """
    if port_base is None:
        port_base = 20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000
    tasks_per_node = max(int(part.split("(")[0])
                         for part in os.environ.get("SLURM_STEP_TASKS_PER_NODE", "1").split(","))
    per_task = max(gpus, 1)  # the resolver cannot place tasks without GPUs; see below for gpus == 0
    resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
        port_base=port_base, gpus_per_node=per_task * tasks_per_node, gpus_per_task=per_task,
        auto_set_gpu=gpus > 0 and "CUDA_VISIBLE_DEVICES" not in os.environ)
    if gpus > 0:
        return resolver
    # CPU workers: the same cluster, but no accelerators (the SLURM resolver reports its GPUs).
    spec = resolver.cluster_spec()
    task_type, task_id = resolver.get_task_info()
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=task_type, task_id=task_id, num_accelerators={"GPU": 0}, rpc_layer="grpc")
