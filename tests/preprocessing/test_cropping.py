import numpy as np

from unet.preprocessing.cropping import crop, mask_box, nonzero_box, nonzero_mask, paste


def sample_image():
    image = np.zeros((10, 12, 14, 2), np.float32)
    image[2, 5, 7, 0] = 3.0       # channel 0 sets the lower x bound
    image[6, 3, 12, 1] = -1.0     # channel 1 (negative) sets lower y and upper z
    image[4, 9, 4, 1] = 0.5       # upper y, lower z
    return image


def test_nonzero_box_hand_made():
    assert nonzero_box(sample_image()) == ((2, 7), (3, 10), (4, 13))


def test_nonzero_box_single_voxel_and_full():
    image = np.zeros((5, 5, 5, 1))
    image[4, 0, 2, 0] = 1
    assert nonzero_box(image) == ((4, 5), (0, 1), (2, 3))
    assert nonzero_box(np.ones((3, 4, 5, 1))) == ((0, 3), (0, 4), (0, 5))


def test_all_zero_image_keeps_full_extent():
    box = nonzero_box(np.zeros((7, 8, 9, 3)))
    assert box == ((0, 7), (0, 8), (0, 9))
    assert crop(np.zeros((7, 8, 9, 3)), box).shape == (7, 8, 9, 3)


def test_crop_then_paste_round_trip():
    rng = np.random.default_rng(0)
    image = sample_image()
    box = nonzero_box(image)
    image[box[0][0]:box[0][1], box[1][0]:box[1][1], box[2][0]:box[2][1]] += rng.normal(
        size=(5, 7, 9, 2)).astype(np.float32)
    cropped = crop(image, box)
    assert cropped.shape == (5, 7, 9, 2)
    np.testing.assert_array_equal(cropped, image[2:7, 3:10, 4:13])

    pasted = paste(cropped, box, image.shape[:3], fill=-5.0)
    assert pasted.shape == image.shape and pasted.dtype == image.dtype
    inside = np.zeros(image.shape[:3], bool)
    inside[2:7, 3:10, 4:13] = True
    np.testing.assert_array_equal(pasted[inside], image[inside])
    assert (pasted[~inside] == -5.0).all()


def test_crop_paste_label_map_without_channel_axis():
    label = np.zeros((6, 6, 6), np.uint8)
    label[1:4, 2:5, 0:3] = 2
    box = ((1, 4), (2, 5), (0, 3))
    cropped = crop(label, box)
    assert (cropped == 2).all()
    np.testing.assert_array_equal(paste(cropped, box, label.shape), label)


def test_nonzero_mask_is_any_channel_and_box_matches():
    image = sample_image()
    mask = nonzero_mask(image)
    np.testing.assert_array_equal(mask, np.any(image != 0, axis=-1))
    assert mask_box(mask) == nonzero_box(image) == ((2, 7), (3, 10), (4, 13))
    assert mask_box(np.zeros((3, 4, 5), bool)) == ((0, 3), (0, 4), (0, 5))
