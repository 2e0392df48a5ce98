import pytest

from unet.data.splits import load_fold, make_splits, parse_fold
from unet.io.atomic import write_json

IDS = [f"case_{i:02d}" for i in range(11)]


def test_every_case_validated_exactly_once_and_train_val_disjoint():
    splits = make_splits(list(reversed(IDS)), nfolds=3, seed=0)
    assert len(splits) == 3
    validated = [cid for fold in splits for cid in fold["val"]]
    assert sorted(validated) == IDS  # each case once, none lost
    for fold in splits:
        assert not set(fold["train"]) & set(fold["val"])
        assert sorted(fold["train"] + fold["val"]) == IDS
        assert fold["train"] == sorted(fold["train"]) and fold["val"] == sorted(fold["val"])
    assert sorted(len(f["val"]) for f in splits) == [3, 4, 4]  # balanced folds


def test_deterministic_for_a_seed_and_independent_of_input_order():
    assert make_splits(IDS, 5, seed=3) == make_splits(list(reversed(IDS)), 5, seed=3)


def test_different_seeds_give_different_splits():
    assert make_splits(IDS, 5, seed=0) != make_splits(IDS, 5, seed=1)


@pytest.mark.parametrize("nfolds", [0, 1, len(IDS) + 1])
def test_bad_nfolds(nfolds):
    with pytest.raises(ValueError, match="nfolds"):
        make_splits(IDS, nfolds)


def test_load_fold(tmp_path):
    path = tmp_path / "splits.json"
    splits = make_splits(IDS, 4, seed=0)
    write_json(path, splits)
    assert load_fold(path, 2) == splits[2]
    for bad in (4, -1):
        with pytest.raises(ValueError, match="splits.json"):
            load_fold(path, bad)


def test_fold_all_trains_on_every_case_and_validates_none(tmp_path):
    path = tmp_path / "splits.json"
    write_json(path, make_splits(list(reversed(IDS)), 4, seed=0))
    assert load_fold(path, "all") == {"train": IDS, "val": []}


def test_parse_fold():
    assert parse_fold("3") == 3 and parse_fold(2) == 2 and parse_fold("all") == "all"
    with pytest.raises(ValueError, match="'best'"):
        parse_fold("best")
