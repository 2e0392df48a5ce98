from unet.preprocessing.topology import MAX_POOLS, MIN_FEATURE_SIZE, topology, total_stride


def test_topology_isotropic_128():
    patch, strides, kernels = topology((128, 128, 128), (1.0, 1.0, 1.0))
    # 128 -> 64 -> 32 -> 16 -> 8 -> 4: pooled while >= 8, five times; 4 is the bottleneck.
    assert patch == (128, 128, 128)
    assert len(strides) == 6
    assert strides[0] == (1, 1, 1)
    assert all(s == (2, 2, 2) for s in strides[1:])
    assert all(k == (3, 3, 3) for k in kernels) and len(kernels) == len(strides)
    assert total_stride(strides) == (32, 32, 32)


def test_topology_caps_pools_at_max_pools():
    patch, strides, _ = topology((512, 512, 512), (1.0, 1.0, 1.0))
    # 512 / 2**6 = 8 could be pooled once more; MAX_POOLS (6) stops it.
    assert MAX_POOLS == 6
    assert len(strides) - 1 == MAX_POOLS
    assert total_stride(strides) == (64, 64, 64)
    assert patch == (512, 512, 512)


def test_topology_stops_at_min_feature_size_per_axis():
    patch, strides, kernels = topology((128, 64, 32), (1.0, 1.0, 1.0))
    # An axis is pooled while its size is >= 2 * MIN_FEATURE_SIZE: (128, 64, 32) -> (64, 32, 16)
    # -> (32, 16, 8) -> (16, 8, 4) -> (8, 4, 4); then x alone is left, and a lone axis needs
    # >= 3 * MIN_FEATURE_SIZE = 12: stop. Strides 16, 16, 8.
    assert total_stride(strides) == (16, 16, 8)
    bottleneck = [p // t for p, t in zip(patch, total_stride(strides))]
    assert bottleneck == [8, 4, 4] and min(bottleneck) == MIN_FEATURE_SIZE
    assert patch == (128, 64, 32)


def test_topology_lone_axis_needs_three_times_min_feature_size():
    # After three pools (64, 8, 8) -> (8, 1, 1): only x can still be pooled, and a lone axis
    # needs >= 12: 8 stays. (64, 8, 8) -> (32, 4, 4) -> 16 -> 8: x gets 3 pools, y/z 1.
    _, strides, _ = topology((64, 8, 8), (1.0, 1.0, 1.0))
    assert total_stride(strides) == (8, 2, 2)
    # 96 -> (48, 4, 4) -> 24 -> 12 -> 6: the lone x is pooled while >= 12: 4 pools.
    _, strides, _ = topology((96, 8, 8), (1.0, 1.0, 1.0))
    assert total_stride(strides) == (16, 2, 2)


def test_topology_anisotropic_coarse_axis_waits():
    patch, strides, kernels = topology((160, 160, 40), (0.7, 0.7, 5.0))
    # Level spacings: (0.7, 0.7, 5) z 7x coarser: kernel (3,3,1), pool x/y; (1.4, 1.4, 5) z 3.6x:
    # again; (2.8, 2.8, 5) z within 2x: kernel 3 from now on, pool all, sizes (40, 40, 40) ->
    # (20, 20, 20) -> (10, 10, 10) -> (5, 5, 5). Bottleneck kernel 3.
    assert kernels == ((3, 3, 1), (3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    assert strides == ((1, 1, 1), (2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    assert total_stride(strides) == (32, 32, 8)
    assert patch == (160, 160, 40)


def test_topology_pads_patch_up_to_the_stride():
    patch, strides, _ = topology((100, 100, 100), (1.0, 1.0, 1.0))
    # 100 -> 50 -> 25 -> 13 -> 7 (sizes rounded up): four pools, stride 16; 100 pads up to 112
    # (nnU-Net pads; the planner then shrinks if the padded patch does not fit).
    assert total_stride(strides) == (16, 16, 16)
    assert patch == (112, 112, 112)
