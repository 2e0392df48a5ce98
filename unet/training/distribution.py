"""How one training step is spread over replicas: a small interface and two implementations.

`TFDistribution` wraps a tf.distribute strategy (default, OneDevice, Mirrored, MultiWorkerMirrored;
unet.training.strategy chooses it), `HorovodDistribution` one Horovod process per device (GPU).
The training loop only uses this interface:

- `replicas`: how many per-replica batches make one optimizer step; `rank`, `size`: this process
  among the training's processes (worker 0 writes the fold's outputs);
- `scope()`: where the model and optimizer are created;
- `batches(make, batch_size, seed)`: this process's iterator over per-step batches;
- `run(fn, batch)`: `fn(images, segs)` on every replica, the mean of its returned loss;
- `all_reduce_mean(grads)` (inside `fn`): the gradients averaged over all replicas;
- `broadcast(variables)`: every replica takes rank 0's values (at start and after a restore).

The gradients are averaged here explicitly, and the optimizer then updates with them as they are
(`apply_without_all_reduce`): every replica sees the same gradients, so a LossScaleOptimizer's
check for overflow agrees across replicas.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import keras
import tensorflow as tf

from unet.training.strategy import make_strategy, multiworker_strategy

HOROVOD_HELP = ("config train.distribution: horovod needs Horovod, which is not installed in this Python "
                "environment ({error}). Run `make horovod-env` to build .venv-horovod (pins in "
                "envs/horovod.txt; Horovod 0.28.1 builds against TensorFlow 2.15), or set "
                "train.distribution: auto")
DatasetFactory = Callable[[int, int], tf.data.Dataset]  # (batch size, seed offset) -> batches


class Distribution:
    """The interface (see the module docstring); this base class is the single-replica case."""

    replicas: int = 1
    rank: int = 0
    size: int = 1

    def scope(self):
        return contextlib.nullcontext()

    def batches(self, make: DatasetFactory, batch_size: int, seed: int) -> Iterator:
        return iter(make(batch_size, seed))

    def run(self, fn, batch):
        return fn(*batch)

    def all_reduce_mean(self, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        return list(grads)

    def broadcast(self, variables: Sequence) -> None:
        pass


class TFDistribution(Distribution):
    """A tf.distribute strategy: replicas are devices of this process (and, for the multi-worker
    strategy, of the other workers); variables are mirrored, so a broadcast is not needed."""

    def __init__(self, strategy: tf.distribute.Strategy):
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        resolver = getattr(strategy, "cluster_resolver", None)
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None:
            self.rank = int(resolver.task_id or 0)
            self.size = len(resolver.cluster_spec().as_dict().get("worker", [])) or 1

    def scope(self):
        return self.strategy.scope()

    def batches(self, make: DatasetFactory, batch_size: int, seed: int) -> Iterator:
        # One dataset of global batches, split by the strategy among replicas (and workers).
        return iter(self.strategy.experimental_distribute_dataset(make(batch_size * self.replicas, seed)))

    def run(self, fn, batch):
        per_replica = self.strategy.run(fn, args=tuple(batch))
        return self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    def all_reduce_mean(self, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        context = tf.distribute.get_replica_context()
        if context is None or self.replicas == 1:
            return list(grads)
        return list(context.all_reduce(tf.distribute.ReduceOp.MEAN, list(grads)))


class HorovodDistribution(Distribution):
    """One process per device (launched by horovodrun, or srun with one task per GPU): each reads
    its own patches (seed + rank) and averages gradients with Horovod's all-reduce."""

    def __init__(self, hvd):
        self.hvd = hvd
        hvd.init()
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:  # one GPU per process: the local_rank-th of the node's
            tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], "GPU")
        self.rank, self.size = hvd.rank(), hvd.size()
        self.replicas = self.size

    def batches(self, make: DatasetFactory, batch_size: int, seed: int) -> Iterator:
        return iter(make(batch_size, seed + self.rank))

    def run(self, fn, batch):
        return self.hvd.allreduce(fn(*batch), op=self.hvd.Average, name="loss")

    def all_reduce_mean(self, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        # grouped: one fused all-reduce; DistributedGradientTape does not work with Keras 3.
        return list(self.hvd.grouped_allreduce(list(grads), op=self.hvd.Average))

    def broadcast(self, variables: Sequence) -> None:
        # Keras 3 variables wrap a tf.Variable (`.value`), which is what Horovod can assign.
        self.hvd.broadcast_variables([v.value if isinstance(v, keras.Variable) else v for v in variables],
                                     root_rank=0)


def import_horovod():
    """horovod.tensorflow, or an error that says how to get it."""
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        raise RuntimeError(HOROVOD_HELP.format(error=error)) from None
    return hvd


def make_distribution(kind: str, gpus: int, nodes: int = 1) -> Distribution:
    """The distribution for config `train.distribution` (`kind`), `train.gpus` and `train.nodes`.

    auto: the multi-worker strategy for nodes > 1, else as many GPUs as asked for (Mirrored, one
    device, or the default strategy); mirrored: one process, `gpus` devices; multiworker: the
    workers of the current srun step; horovod: this process's place among Horovod's.
    """
    if kind == "horovod":
        return HorovodDistribution(import_horovod())
    if kind == "auto":
        return TFDistribution(make_strategy(gpus, nodes))
    if kind == "mirrored":
        if nodes > 1:
            raise ValueError(f"config train.distribution: mirrored runs on one node, but train.nodes={nodes}; "
                             "use auto or multiworker")
        return TFDistribution(make_strategy(gpus, 1))
    if kind == "multiworker":
        return TFDistribution(multiworker_strategy(gpus, nodes))
    raise ValueError(f"config train.distribution: unknown value {kind!r} (auto, mirrored, multiworker, horovod)")


def apply_without_all_reduce(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """`optimizer`, made to update with the gradients it is given, which `Distribution.all_reduce_mean`
    has already averaged (Keras' TensorFlow optimizers otherwise sum them across replicas again)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if not hasattr(inner, "_all_reduce_sum_gradients"):
        raise RuntimeError(f"{type(inner).__name__} has no _all_reduce_sum_gradients: this Keras version "
                           "aggregates gradients differently; unet.training.distribution needs updating")
    inner._all_reduce_sum_gradients = lambda grads_and_vars: list(grads_and_vars)
    return optimizer
