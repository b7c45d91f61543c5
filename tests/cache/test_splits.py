import numpy as np
import pytest

from cache.manifest import load_manifest
from cache.splits import PRESETS, Split, make_split, resolve_seeds, split_manifest

N_PER_CLASS = 20


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(23), N_PER_CLASS)
    rng.shuffle(labels)
    ids = [f"s{i:04d}" for i in range(len(labels))]
    return ids, labels


def test_disjoint_covering_and_sizes(data):
    ids, labels = data
    sp = make_split(ids, labels, preset="cpjku", fold=0)
    tr, va, te = set(sp.train), set(sp.val), set(sp.test)
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert tr | va | te == set(ids)
    n = len(ids)
    assert len(te) == n // 5 and len(va) == pytest.approx(0.16 * n, abs=1) and sp.evaluation_ids() == va | te


def test_stratified(data):
    ids, labels = data
    label = dict(zip(ids, labels, strict=True))
    sp = make_split(ids, labels, preset="baseline", fold=3)
    for part, expected in (("test", 4), ("val", 3.2), ("train", 12.8)):
        counts = np.bincount([label[i] for i in sp.part(part)], minlength=23)
        assert np.all(np.abs(counts - expected) <= 1), (part, counts)


def test_test_folds_partition_the_data(data):
    ids, labels = data
    tests = [set(make_split(ids, labels, preset="cpjku", fold=k).test) for k in range(5)]
    assert sum(len(t) for t in tests) == len(ids) and set().union(*tests) == set(ids)


def test_deterministic_and_presets_differ(data):
    ids, labels = data
    a = make_split(ids, labels, preset="cpjku", fold=1)
    assert a == make_split(ids, labels, preset="cpjku", fold=1)
    b = make_split(ids, labels, preset="baseline", fold=1)
    assert (b.fold_seed, b.val_seed) == PRESETS["baseline"] == (1821, 1821)
    assert (a.fold_seed, a.val_seed) == (566182, 566193)
    assert set(a.test) != set(b.test)
    c = make_split(ids, labels, preset="custom", seed=7, fold=1)
    assert c == make_split(ids, labels, preset="custom", seed=7, fold=1)
    assert set(c.test) != set(make_split(ids, labels, preset="custom", seed=8, fold=1).test)
    assert set(c.test) != set(a.test)


def test_fixed_split_regression(data):
    """The presets' splits must never change across versions (results would stop being comparable)."""
    ids, labels = data
    sp = make_split(ids, labels, preset="cpjku", fold=0)
    assert sorted(sp.test)[:5] == ["s0001", "s0003", "s0004", "s0008", "s0010"]
    assert sorted(make_split(ids, labels, preset="baseline", fold=0).val)[:5] == [
        "s0000",
        "s0001",
        "s0004",
        "s0020",
        "s0021",
    ]


def test_save_load_round_trip(data, tmp_path):
    ids, labels = data
    sp = make_split(ids, labels, preset="custom", seed=3, fold=4, dataset="toy")
    path = sp.save(tmp_path / "sub" / "split.json")
    back = Split.load(path)
    assert (
        back == sp
        and back.dataset == "toy"
        and back.fold == 4
        and back.describe().startswith("toy split 'custom'")
    )


def test_bad_arguments(data):
    ids, labels = data
    with pytest.raises(ValueError, match="needs a seed"):
        resolve_seeds("custom")
    with pytest.raises(ValueError, match="unknown split preset 'x'"):
        make_split(ids, labels, preset="x")
    with pytest.raises(ValueError, match="fold must be in 0..4"):
        make_split(ids, labels, fold=5)
    with pytest.raises(ValueError, match="target rows only"):
        make_split(ids, np.r_[labels[:-1], -1])
    with pytest.raises(ValueError, match="part must be"):
        make_split(ids, labels).part("dev")


@pytest.mark.filterwarnings("ignore:The least populated class")
def test_too_small_class_is_named():
    labels = np.r_[np.zeros(20, int), [1, 1]]  # fold 0 leaves one m-si clip to split into train/val
    with pytest.raises(ValueError, match=r"cannot make a stratified split of toy.*m-si \(2\)"):
        make_split([str(i) for i in range(22)], labels, fold=0, dataset="toy")


def test_split_manifest_uses_targets_only(make_dataset, balanced, row):
    rows = balanced(5, classes=["fx-a", "m-sp"]) + [row("x1", "fx-other", "499"), row("x2", "", "300")]
    m = load_manifest(make_dataset(rows, name="BSD10k"))
    sp = split_manifest(m, preset="baseline", fold=0)
    assert sp.dataset == "BSD10k"
    assert (
        set(sp.train) | set(sp.val) | set(sp.test) == set(m.ids.tolist())
        and "x1" not in sp.train + sp.val + sp.test
    )
