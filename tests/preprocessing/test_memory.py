from unet.preprocessing.memory import activation_count, parameter_count, training_memory


def test_memory_model_by_hand():
    # Two levels, patch 8^3, filters (4, 8), one channel, two classes.
    patch, strides, kernels, filters = (8, 8, 8), ((1, 1, 1), (2, 2, 2)), ((3, 3, 3),) * 2, (4, 8)
    # Activations: input + logits + softmax 512 * (1 + 2 * 2) = 2560; level 0 (512 voxels, 4
    # filters): encoder 2 blocks x 3 tensors x 4 x 512 = 12288, decoder (up 1 + concat 2 + 2
    # blocks x 3) x 4 x 512 = 18432; level 1 (64 voxels, 8 filters): encoder 2 x 3 x 8 x 64 = 3072.
    assert activation_count(patch, strides, filters, 1, 2) == 2560 + 12288 + 18432 + 3072
    # Weights: level 0 encoder 27 x (1*4 + 4*4) + 4 norms' 2 x 4... = 540 + 16; up conv 8 x 8 x 4
    # = 256; decoder 27 x (8*4 + 4*4) + 16 = 1312; level 1 encoder 27 x (4*8 + 8*8) + 32 = 2624;
    # head 4 x 2 + 2 = 10.
    assert parameter_count(strides, kernels, filters, 1, 2) == 556 + 256 + 1312 + 2624 + 10
    # Batch 2 in float16 plus 16 bytes per parameter.
    assert training_memory(patch, strides, kernels, filters, 1, 2, 2) == 2 * 36352 * 2 + 4758 * 16
