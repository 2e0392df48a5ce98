import os
import random
import socket
from types import SimpleNamespace

import pytest

# Keep TensorFlow's C++ start-up chatter out of the test output (must precede its import).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory):
    """A 4-case demo, planned for a tiny network (patch 16^3, filters 4-8-16), preprocessed and
    sharded; fold 0 of a 2-fold split; `plans` is plans.json's content (the 2d configuration as
    planned). Treat as read-only."""
    from unet.data.shards import write_shards
    from unet.data.splits import make_splits
    from unet.io.demo import generate_demo
    from unet.io.msd import load_dataset
    from unet.preprocessing.fingerprint import compute_fingerprint
    from unet.preprocessing.plan import Plan
    from unet.preprocessing.planning import make_plans
    from unet.preprocessing.preprocess import preprocess_case

    root = tmp_path_factory.mktemp("training_demo")
    dataset = load_dataset(generate_demo(root / "raw", n_train=4, n_test=0, seed=0))
    fingerprint = compute_fingerprint(dataset, workers=1, seed=0)
    plans = make_plans(fingerprint, {"patch_size": [16, 16, 16], "filters": 4, "batch_size": 2})
    plan = Plan.from_json(plans)
    for case in dataset.training:
        preprocess_case(case, plan, root / "preprocessed")
    ids = [case.id for case in dataset.training]
    write_shards(root / "preprocessed", ids, root / "shards")
    fold = make_splits(ids, nfolds=2, seed=0)[0]
    return SimpleNamespace(root=root, plan=plan, plans=plans, dataset=dataset, shard_dir=root / "shards",
                           preprocessed=root / "preprocessed", train_ids=fold["train"], val_ids=fold["val"])


@pytest.fixture
def free_port_pair():
    """A function returning a port p in [20000, 40000) with p and p + 1 free: the ports the SLURM
    cluster resolver gives two tasks (20000 + job id % 20000 and the next)."""
    def find() -> int:
        for _ in range(100):
            port = random.randrange(20000, 39999)
            with socket.socket() as a, socket.socket() as b:
                try:
                    a.bind(("127.0.0.1", port))
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
        raise RuntimeError("no two free ports")
    return find
