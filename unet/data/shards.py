"""TFRecord shards of preprocessed cases, and the tf.data reader over them.

One record per case: id, image (X, Y, Z, C) float32 and label (X, Y, Z) uint8 as serialized
tensors. `index.json` lists which case sits in which shard, so a fold reads only its shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from unet.io.atomic import atomic_path, load_npy, read_json, write_json

INDEX = "index.json"
TARGET_SHARD_BYTES = 256 * 2**20


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _example(case_id: str, image: np.ndarray, seg: np.ndarray) -> bytes:
    features = {
        "case": _bytes_feature(case_id.encode()),
        "image": _bytes_feature(tf.io.serialize_tensor(image.astype(np.float32)).numpy()),
        "seg": _bytes_feature(tf.io.serialize_tensor(seg.astype(np.uint8)).numpy()),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_shards(preprocessed_dir: str | Path, case_ids: Sequence[str], out_dir: str | Path) -> dict:
    """Pack the training cases (those with a _seg.npy) into shards of about TARGET_SHARD_BYTES."""
    preprocessed_dir, out_dir = Path(preprocessed_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: list[list[str]] = [[]]
    size = 0
    for cid in case_ids:
        nbytes = (preprocessed_dir / f"{cid}.npy").stat().st_size
        if groups[-1] and size + nbytes > TARGET_SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(cid)
        size += nbytes
    shards = []
    progress = tqdm(total=len(case_ids), desc="shard", unit="case")
    for number, group in enumerate(groups):
        name = f"shard_{number:04d}.tfrecord"
        with atomic_path(out_dir / name, suffix=".tfrecord") as tmp, tf.io.TFRecordWriter(str(tmp)) as w:
            for cid in group:
                w.write(_example(cid, load_npy(preprocessed_dir / f"{cid}.npy"),
                                 load_npy(preprocessed_dir / f"{cid}_seg.npy")))
                progress.update()
        shards.append({"file": name, "cases": group})
    progress.close()
    index = {"shards": shards}
    write_json(out_dir / INDEX, index)
    return index


def _parse(record):
    parsed = tf.io.parse_single_example(record, {
        "case": tf.io.FixedLenFeature([], tf.string),
        "image": tf.io.FixedLenFeature([], tf.string),
        "seg": tf.io.FixedLenFeature([], tf.string),
    })
    return {"case": parsed["case"],
            "image": tf.io.parse_tensor(parsed["image"], tf.float32),
            "seg": tf.io.parse_tensor(parsed["seg"], tf.uint8)}


def read_cases(shard_dir: str | Path, case_ids: Sequence[str]) -> tf.data.Dataset:
    """Dataset of {"case", "image", "seg"} for the listed cases, in shard order."""
    shard_dir = Path(shard_dir)
    index = read_json(shard_dir / INDEX)
    wanted = set(case_ids)
    missing = wanted - {c for s in index["shards"] for c in s["cases"]}
    if missing:
        raise KeyError(f"{shard_dir / INDEX}: cases {sorted(missing)} are in no shard; rerun the shard rule")
    files = [str(shard_dir / s["file"]) for s in index["shards"] if wanted & set(s["cases"])]
    keep = tf.constant(sorted(wanted))
    return (tf.data.TFRecordDataset(files)
            .map(_parse, num_parallel_calls=tf.data.AUTOTUNE)
            .filter(lambda item: tf.reduce_any(tf.equal(item["case"], keep))))
