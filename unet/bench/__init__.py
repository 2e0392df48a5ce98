"""Benchmarks against reference implementations, run by the `benchmark_*` rules or as
`python -m unet.bench.NAME` (preprocess, loader, train, memory, startup, accuracy).

The references (nnU-Net v2; Keras on JAX) run from virtualenvs of their own, built outside the
package by `make bench-env`; their folders are passed in (the rules pass theirs; on the command
line --nnunet-venv, --jax-venv), and nothing here reaches for a file outside the package.

- preprocess: our validate + fingerprint + plan + preprocess against nnUNetv2_plan_and_preprocess,
  with synthetic (the generated cases of every benchmark), nnunet_preprocess (nnU-Net's side) and
  compare (the two outputs voxel by voxel);
- loader: augmented training patches per second against nnU-Net's loader;
- train: training-step throughput and FLOP rate, with flops (the count), train_jax (the JAX rows)
  and peak (the machine's own matrix-product rate);
- memory: peak memory of one preprocessing job;
- startup: our workflow run as users run it (Snakemake, one job per case), and what a job costs
  beyond its work;
- accuracy: fold 0 trained by our workflow and by nnU-Net v2 (nnunet_train: our plan as its
  configuration, a step-limited trainer) on a generated hard dataset (hard_cases), scored alike;
- nnunet_plans: nnU-Net's experiment planner on our fingerprints, the reference of the planner's
  tests (tests/preprocessing/test_configurations.py);
- nnunet_worker: the code that runs inside the nnU-Net virtualenv; reference_env: finds the
  virtualenvs and says how to build a missing one.
"""
