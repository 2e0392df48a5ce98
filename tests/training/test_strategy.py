import os

import tensorflow as tf

from unet.training.strategy import make_strategy


def test_replicas_follow_the_visible_gpus():
    visible = len(tf.config.list_logical_devices("GPU"))
    assert make_strategy(0).num_replicas_in_sync == 1
    assert make_strategy(1).num_replicas_in_sync == 1
    # Asking for more GPUs than visible falls back to what there is (CPU: one replica).
    assert make_strategy(2).num_replicas_in_sync == max(1, min(2, visible))


def test_one_node_keeps_the_single_process_strategy():
    strategy = make_strategy(0, nodes=1)
    assert not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    assert strategy.num_replicas_in_sync == 1


def _srun_step(monkeypatch, rank, tasks=2, host="127.0.0.1"):
    """The SLURM_* variables srun gives task `rank` of a step of `tasks` tasks on one node."""
    for name, value in {"SLURM_JOB_ID": "123", "SLURM_PROCID": str(rank), "SLURM_STEP_NUM_TASKS": str(tasks),
                        "SLURM_STEP_NODELIST": host, "SLURM_STEP_TASKS_PER_NODE": str(tasks)}.items():
        monkeypatch.setenv(name, value)


def test_cpu_workers_of_an_srun_step(monkeypatch):
    from unet.training.strategy import slurm_cluster_resolver

    _srun_step(monkeypatch, rank=1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    resolver = slurm_cluster_resolver(gpus=0)
    # Ports from the job id, one per task on the node; this task is worker 1 of 2, without GPUs.
    assert resolver.cluster_spec().as_dict() == {"worker": ["127.0.0.1:20123", "127.0.0.1:20124"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert resolver.num_accelerators() == {"GPU": 0}
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_gpu_workers_get_their_share_of_the_node(monkeypatch):
    from unet.training.strategy import slurm_cluster_resolver

    _srun_step(monkeypatch, rank=1)
    # setenv first, so that monkeypatch restores the variable the resolver is about to set.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    resolver = slurm_cluster_resolver(gpus=2)
    assert resolver.cluster_spec().as_dict() == {"worker": ["127.0.0.1:20123", "127.0.0.1:20124"]}
    assert resolver.get_task_info() == ("worker", 1)
    assert resolver.num_accelerators() == {"GPU": 2}
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"  # task 1 of 2 on a node with 4 GPUs
    # Where SLURM already assigned the GPUs (CUDA_VISIBLE_DEVICES set), they are kept.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    slurm_cluster_resolver(gpus=2).cluster_spec()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7"



def test_distribution_setting_chooses_the_implementation():
    import pytest

    from unet.training.distribution import TFDistribution, make_distribution

    auto = make_distribution("auto", gpus=0)
    assert isinstance(auto, TFDistribution) and (auto.replicas, auto.rank, auto.size) == (1, 0, 1)
    assert make_distribution("mirrored", gpus=2).replicas == max(1, min(2, len(tf.config.list_logical_devices("GPU"))))
    with pytest.raises(ValueError, match="train.distribution: mirrored runs on one node"):
        make_distribution("mirrored", gpus=1, nodes=2)
    with pytest.raises(ValueError, match="train.distribution: unknown value 'ring'"):
        make_distribution("ring", gpus=1)


def test_horovod_where_it_is_not_installed_says_how_to_get_it():
    import importlib.util

    import pytest

    from unet.training.distribution import make_distribution

    if importlib.util.find_spec("horovod") is not None:
        pytest.skip("Horovod is installed in this environment (tests/training/test_distributed.py runs it)")
    with pytest.raises(RuntimeError, match=r"make horovod-env.*envs/horovod.txt"):
        make_distribution("horovod", gpus=1)
