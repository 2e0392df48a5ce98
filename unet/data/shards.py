"""TFRecord shards of preprocessed cases, and the tf.data reader over them.

One record per case: id, image (X, Y, Z, C) float32, label (X, Y, Z) uint8 and foreground
locations (N, 4) int32, rows (class index, x, y, z), as serialized tensors. For a cascade
(`previous_dir`), the image's C channels are the preprocessed image's followed by the previous
stage's segmentation as one-hot channels of the foreground classes
(`unet.preprocessing.cascade.previous_stage_channels`); `index.json` records the channel count. The locations come
from preprocess's `{case}_fg.npy` (up to FG_SAMPLES_PER_CLASS rows per present class), or are sampled
from the seg here with the same contract when that file is missing. `index.json` lists which case
sits in which shard, so a fold reads only its shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from unet.data.splits import make_splits
from unet.io.atomic import atomic_path, load_npy, read_json, write_json
from unet.preprocessing.cascade import previous_stage_channels
from unet.preprocessing.locations import FG_SAMPLES_PER_CLASS, case_seed, foreground_locations

INDEX = "index.json"
TARGET_SHARD_BYTES = 256 * 2**20
FORMAT = 2  # 2: records carry foreground locations


def locations_from_seg(seg: np.ndarray, seed: int = 0, cap: int = FG_SAMPLES_PER_CLASS) -> np.ndarray:
    """What preprocess records in `{case}_fg.npy`, for a class-index map without one."""
    return foreground_locations(seg, int(seg.max()) + 1, seed, cap)


def load_locations(preprocessed_dir: Path, case_id: str, seg: np.ndarray) -> np.ndarray:
    """The case's recorded foreground locations, checked; computed from `seg` if none were written."""
    path = preprocessed_dir / f"{case_id}_fg.npy"
    if not path.exists():
        return locations_from_seg(seg, case_seed(case_id))  # as preprocess would have drawn them
    locations = load_npy(path)
    if locations.ndim != 2 or locations.shape[1] != 4 or not np.issubdtype(locations.dtype, np.integer):
        raise ValueError(f"{path}: expected integer foreground locations of shape (N, 4), "
                         f"got {locations.dtype} {locations.shape}; rerun preprocess for this case")
    if len(locations) and (np.any(locations[:, 1:] < 0) or np.any(locations[:, 1:] >= np.array(seg.shape))):
        raise ValueError(f"{path}: locations outside the case's grid {seg.shape}; rerun preprocess for this case")
    return locations.astype(np.int32)


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _example(case_id: str, image: np.ndarray, seg: np.ndarray, locations: np.ndarray) -> bytes:
    features = {
        "case": _bytes_feature(case_id.encode()),
        "image": _bytes_feature(tf.io.serialize_tensor(image.astype(np.float32)).numpy()),
        "seg": _bytes_feature(tf.io.serialize_tensor(seg.astype(np.uint8)).numpy()),
        "fg": _bytes_feature(tf.io.serialize_tensor(locations.astype(np.int32)).numpy()),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def case_image(preprocessed_dir: Path, case_id: str, previous_dir: Path | None = None,
               num_classes: int | None = None) -> np.ndarray:
    """The image a case's record holds: the preprocessed image, and with `previous_dir` the one-hot
    channels of its previous stage segmentation (`{previous_dir}/{case}.npy`) after it."""
    image = load_npy(preprocessed_dir / f"{case_id}.npy")
    if previous_dir is None:
        return image
    previous = load_npy(previous_dir / f"{case_id}.npy")
    if previous.shape != image.shape[:3]:
        raise ValueError(f"{previous_dir / f'{case_id}.npy'}: shape {previous.shape} is not the shape "
                         f"{image.shape[:3]} of the preprocessed {case_id}.npy; write the previous stage again")
    return np.concatenate([image, previous_stage_channels(previous, num_classes)], axis=-1)


def write_shards(preprocessed_dir: str | Path, case_ids: Sequence[str], out_dir: str | Path,
                 previous_dir: str | Path | None = None, num_classes: int | None = None) -> dict:
    """Pack the training cases (those with a _seg.npy) into shards of about TARGET_SHARD_BYTES,
    with each case's foreground locations (`{case}_fg.npy`, or sampled from the seg if missing).
    With `previous_dir` (a cascade's: `unet.preprocessing.cascade.write_previous_stage`), each
    image gets the one-hot channels of the `num_classes` - 1 foreground classes appended."""
    preprocessed_dir, out_dir = Path(preprocessed_dir), Path(out_dir)
    if previous_dir is not None:
        if num_classes is None:
            raise ValueError("write_shards: a previous stage (previous_dir) needs num_classes for its one-hot channels")
        previous_dir = Path(previous_dir)
    extra = 0 if previous_dir is None else num_classes - 1  # channels appended to each image
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: list[list[str]] = [[]]
    size = 0
    for cid in case_ids:
        nbytes = (preprocessed_dir / f"{cid}.npy").stat().st_size
        if extra:
            nbytes += 4 * extra * int(np.prod(load_npy(preprocessed_dir / f"{cid}.npy", mmap=True).shape[:3]))
        if groups[-1] and size + nbytes > TARGET_SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(cid)
        size += nbytes
    shards, computed, channels = [], [], None
    progress = tqdm(total=len(case_ids), desc="shard", unit="case")
    for number, group in enumerate(groups):
        name = f"shard_{number:04d}.tfrecord"
        with atomic_path(out_dir / name, suffix=".tfrecord") as tmp, tf.io.TFRecordWriter(str(tmp)) as w:
            for cid in group:
                seg = load_npy(preprocessed_dir / f"{cid}_seg.npy")
                if not (preprocessed_dir / f"{cid}_fg.npy").exists():
                    computed.append(cid)
                image = case_image(preprocessed_dir, cid, previous_dir, num_classes)
                channels = image.shape[-1]
                w.write(_example(cid, image, seg, load_locations(preprocessed_dir, cid, seg)))
                del image
                progress.update()
        # Decoded bytes per case (image + seg): the input pipeline sizes its buffers from them.
        shards.append({"file": name, "cases": group,
                       "case_bytes": {cid: _decoded_bytes(preprocessed_dir, cid, extra) for cid in group}})
    progress.close()
    if computed:
        print(f"no _fg.npy for {len(computed)} case(s) ({', '.join(computed[:5])}"
              f"{', ...' if len(computed) > 5 else ''}): foreground locations sampled from the seg")
    index = {"format": FORMAT, "channels": channels, "shards": shards}
    write_json(out_dir / INDEX, index)
    return index


def write_shards_and_splits(preprocessed_dir: str | Path, case_ids: Sequence[str], out_dir: str | Path,
                            splits: str | Path, nfolds: int, seed: int = 0, previous_dir: str | Path | None = None,
                            num_classes: int | None = None) -> dict:
    """Rule `shard`: `write_shards` of the training cases `case_ids` into `out_dir` (with a
    cascade's `previous_dir` and `num_classes`), and their k-fold splits (`make_splits` with
    `nfolds` and `seed`) to `splits` (splits.json). Returns the shards' index."""
    index = write_shards(preprocessed_dir, case_ids, out_dir, previous_dir, num_classes)
    write_json(splits, make_splits(case_ids, nfolds, seed))
    return index


def _decoded_bytes(preprocessed_dir: Path, case_id: str, extra_channels: int = 0) -> int:
    """float32 image (with `extra_channels` appended) + uint8 seg."""
    image = load_npy(preprocessed_dir / f"{case_id}.npy", mmap=True)
    voxels = int(np.prod(image.shape[:3]))
    return int(image.nbytes + voxels * (4 * extra_channels + 1))


def shard_channels(shard_dir: str | Path) -> int | None:
    """The image channels the shards' records hold (None: written before the index said)."""
    channels = read_json(Path(shard_dir) / INDEX).get("channels")
    return None if channels is None else int(channels)


def case_bytes(shard_dir: str | Path, case_ids: Sequence[str]) -> dict[str, int]:
    """Decoded bytes (image + seg) of each listed case, from the shard index (estimated from the
    shard files' sizes for shards written before the index recorded them)."""
    shard_dir = Path(shard_dir)
    sizes: dict[str, int] = {}
    for shard in read_json(shard_dir / INDEX)["shards"]:
        recorded = shard.get("case_bytes") or {}
        estimate = (shard_dir / shard["file"]).stat().st_size // max(1, len(shard["cases"]))
        sizes.update({cid: int(recorded.get(cid, estimate)) for cid in shard["cases"]})
    return {cid: sizes[cid] for cid in case_ids if cid in sizes}


def _parse(record):
    parsed = tf.io.parse_single_example(record, {
        "case": tf.io.FixedLenFeature([], tf.string),
        "image": tf.io.FixedLenFeature([], tf.string),
        "seg": tf.io.FixedLenFeature([], tf.string),
        "fg": tf.io.FixedLenFeature([], tf.string),
    })
    image = tf.io.parse_tensor(parsed["image"], tf.float32)
    seg = tf.io.parse_tensor(parsed["seg"], tf.uint8)
    fg = tf.io.parse_tensor(parsed["fg"], tf.int32)
    return {"case": parsed["case"], "image": tf.ensure_shape(image, [None, None, None, None]),
            "seg": tf.ensure_shape(seg, [None, None, None]), "fg": tf.ensure_shape(fg, [None, 4])}


def read_cases(shard_dir: str | Path, case_ids: Sequence[str]) -> tf.data.Dataset:
    """Dataset of {"case", "image", "seg", "fg"} for the listed cases, in shard order."""
    shard_dir = Path(shard_dir)
    index = read_json(shard_dir / INDEX)
    if index.get("format", 1) < FORMAT:
        raise ValueError(f"{shard_dir / INDEX}: shards written without foreground locations "
                         f"(format {index.get('format', 1)}, need {FORMAT}); rerun the shard rule")
    wanted = set(case_ids)
    missing = wanted - {c for s in index["shards"] for c in s["cases"]}
    if missing:
        raise KeyError(f"{shard_dir / INDEX}: cases {sorted(missing)} are in no shard; rerun the shard rule")
    files = [str(shard_dir / s["file"]) for s in index["shards"] if wanted & set(s["cases"])]
    keep = tf.constant(sorted(wanted))
    return (tf.data.TFRecordDataset(files)
            .map(_parse, num_parallel_calls=tf.data.AUTOTUNE)
            .filter(lambda item: tf.reduce_any(tf.equal(item["case"], keep))))
