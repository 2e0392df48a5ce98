"""The step profiler: op names sorted into kinds, and a real traced step of a small network."""

import dataclasses

import pytest

from unet.bench.profile import breakdown, format_profile, op_kind, profile_train
from unet.bench.train import benchmark_plan, default_plan


@pytest.mark.parametrize("name, kind", [
    ("StatefulPartitionedCall/unet_1/enc0a_conv_1/convolution:_MklNativeConv3D", "convolution forward"),
    ("StatefulPartitionedCall/gradient_tape/unet_1/dec1b_conv_1/convolution/Conv3DBackpropFilterV2:"
     "_MklNativeConv3DBackpropFilterV2", "convolution backward"),
    ("StatefulPartitionedCall/unet_1/enc2b_norm_1/Sum:Sum", "normalization forward"),
    ("StatefulPartitionedCall/instance_norm_grad_3/mul:Mul", "normalization backward"),
    ("StatefulPartitionedCall/gradient_tape/unet_1/dec0a_act_1/LeakyRelu/LeakyReluGrad:LeakyReluGrad",
     "activation backward"),
    ("StatefulPartitionedCall/unet_1/up0_1/conv_transpose:_MklNativeConv3DBackpropInputV2",
     "transposed convolution forward"),
    ("StatefulPartitionedCall/unet_1/skip12_1/concat:ConcatV2", "concatenation forward"),
    ("StatefulPartitionedCall/unet_1/head_ds1_1/convolution:_MklNativeFusedConv3D", "head forward"),
    ("StatefulPartitionedCall/LogSoftmax:LogSoftmax", "loss and other forward"),
    ("StatefulPartitionedCall/l2_adam/sub_100:Sub", "optimizer"),
])
def test_op_kinds(name, kind):
    assert op_kind(name) == kind


def test_breakdown_takes_each_ops_fastest_run_per_step():
    durations = {"a/enc0a_conv_1/convolution:Conv3D": [5.0, 2.0, 9.0, 2.5],   # one op, 4 steps
                 "a/l2_adam/sub:Sub": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]}  # runs twice a step
    assert breakdown(durations, 4) == {"convolution forward": 2.0, "optimizer": 2.0}


def test_profile_of_a_small_network(capsys):
    plan = dataclasses.replace(benchmark_plan(default_plan(2, 3), (16, 16, 16)), filters=(4, 8, 16))
    result = profile_train(plan, batch_size=2, threads=1, steps=3, warmup=2)
    kinds = result["kinds_ms"]
    for kind in ("convolution forward", "convolution backward", "normalization forward", "normalization backward",
                 "activation forward", "transposed convolution forward", "concatenation forward", "optimizer",
                 "loss and other forward"):
        assert kinds.get(kind, 0) > 0, kind
    assert result["op_ms_per_step"] == pytest.approx(sum(kinds.values()))
    assert result["cpu_ms_per_step"] > 0 and result["matmul_gflop_per_cpu_second"] > 1
    assert 0 < result["peak_fraction_if_busy"] < 1
    assert "convolution backward" in format_profile(result)
