"""Offline providers: `embedded` (MiniLM similarity to class descriptions) and `embedded-knn`
(out-of-fold nearest labelled training clips), on tiny generated datasets."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from cache.splits import Split
from cache.store import Store
from cache.tables import read_priors, read_summaries
from cache.taxonomy import CLASS_INDEX, CLASSES
from extract.llm.cli import main
from extract.llm.evaluate import score_prior
from extract.llm.providers.embedded_knn import fold_of, knn_prior

#: class -> a made-up word: informative metadata that only labelled neighbours can decode
CODEWORDS = {
    "fx-a": "blorvex",
    "fx-v": "quintarol",
    "m-m": "zeptolic",
    "sp-s": "frumigan",
    "is-k": "wozzleborn",
}
FILLER = ["recording", "take", "sample", "file", "session", "clip", "version", "edit"]


def _informative_rows(mrow, n_per_class=12, seed=0):
    rng = random.Random(seed)
    rows, k = [], 0
    for code, word in CODEWORDS.items():
        for _ in range(n_per_class):
            f = rng.sample(FILLER, 2)
            rows.append(mrow(str(1000 + k), code, f"{word} {f[0]} {rng.randint(1, 99)}", f"{f[1]}, {word}"))
            k += 1
    rng.shuffle(rows)
    return rows


def test_knn_prior_known_answer():
    Q = np.array([[1.0, 0.0], [1.0, 0.0]])
    P = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    labels = np.array([0, 1, 2])
    prior = knn_prior(Q, np.array([-1, 0]), P, labels, np.array([0, 1, 1]), k=2, temperature=1.0)
    e = np.exp
    # query 0 sees the whole pool: neighbours 0 (sim 1) and 2 (sim 0.8)
    assert prior[0, 0] == pytest.approx(e(1) / (e(1) + e(0.8)), abs=1e-6)
    assert prior[0, 2] == pytest.approx(e(0.8) / (e(1) + e(0.8)), abs=1e-6)
    # query 1 is a fold-0 training clip: pool item 0 (its fold) is excluded -> neighbours 2 and 1
    assert prior[1, 0] == 0.0
    assert prior[1, 2] == pytest.approx(e(0.8) / (e(0.8) + e(0)), abs=1e-6)
    assert prior[1, 1] == pytest.approx(1 / (e(0.8) + 1), abs=1e-6)


def test_folds_are_deterministic_and_balanced():
    ids = [str(i) for i in range(1000)]
    f = fold_of(ids, 5, 0)
    assert (f == fold_of(list(reversed(ids)), 5, 0)[::-1]).all()
    assert np.bincount(f, minlength=5).min() > 150
    assert (f != fold_of(ids, 5, 1)).any()


def test_score_prior_scores_argmax_of_labelled_rows_with_a_prior():
    from cache.metric import hierarchical_scores

    rng = np.random.default_rng(0)
    n = 300
    labels = rng.integers(0, 23, n)
    labels[:20] = -1  # unlabelled rows are not scored
    prior = rng.random((n, 23))
    prior[np.arange(100, 200), labels[100:200]] += 5  # these rows' argmax is their label
    missing = np.zeros(n, dtype=bool)
    missing[250:] = True  # rows without a prior are not scored either
    out = score_prior(prior, missing, labels)
    use = (labels >= 0) & ~missing
    pred = prior[use].argmax(1)
    assert (out["n_labelled"], out["n_scored"]) == (280, 230) and out["coverage"] == pytest.approx(230 / 280)
    assert out["accuracy"] == pytest.approx(np.mean(pred == labels[use]))
    assert out["hF"] == pytest.approx(
        hierarchical_scores(labels[use], pred, never_predicted="zero").hF, abs=1e-12
    )


def test_embedded_priors_and_summaries(make_dataset, mrow, tmp_path):
    rows = [
        mrow("1", "fx-a", "dog barking", "dog, bark"),
        mrow("2", "is-k", "piano note C4", "piano, note"),
        mrow("3", "sp-c", "people talking in a crowd", "crowd, chatter"),
        mrow("4", "fx-o", "", "", "<a href='http://x.org'></a>"),
    ]
    root = make_dataset(rows)
    for kind in ("priors", "summaries"):
        assert main([kind, "--dataset", str(root), "--provider", "embedded", "--no-progress"]) == 0
    store = Store(root / "cache.zarr", mode="r")
    prior, missing = read_priors(store, "embedded", ["1", "2", "3", "4"])
    assert missing.tolist() == [False, False, False, True]
    assert [CLASSES[i] for i in prior[:3].argmax(1)] == ["fx-a", "is-k", "sp-c"]
    assert np.allclose(prior[:3].sum(1), 1.0) and (prior[3] == 0).all()
    attrs = store.attrs("llm/priors/embedded")
    assert attrs["model"] == "all-MiniLM-L6-v2" and attrs["class_descriptions"] == "built-in"
    assert attrs["evaluation"]["all"]["accuracy"] == 1.0
    text, smissing = read_summaries(store, "embedded", ["1", "4"])
    assert text == ["dog barking. Tags: dog, bark.", ""] and smissing.tolist() == [False, True]

    # a lower temperature sharpens the prior without changing its ranking
    assert (
        main(
            [
                "priors",
                "--dataset",
                str(root),
                "--provider",
                "embedded",
                "--name",
                "cold",
                "--no-progress",
                "--set",
                "llm.embed_temperature=0.01",
            ]
        )
        == 0
    )
    cold, _ = read_priors(store, "cold", ["1", "2", "3"])
    assert (cold.argmax(1) == prior[:3].argmax(1)).all() and (cold.max(1) > prior[:3].max(1)).all()


def test_knn_beats_embedded_where_metadata_is_informative(make_dataset, mrow, tmp_path, capsys):
    root = make_dataset(_informative_rows(mrow))
    from cache.manifest import load_manifest
    from cache.splits import split_manifest

    split_file = split_manifest(load_manifest(root, require_audio=False), preset="cpjku", fold=0).save(
        tmp_path / "split.json"
    )
    base = ["--dataset", str(root), "--split", str(split_file), "--no-progress"]
    assert main(["priors", *base, "--provider", "embedded"]) == 0
    assert main(["priors", *base, "--provider", "embedded-knn", "--train-dataset", str(root)]) == 0
    out = capsys.readouterr().out
    assert "prior alone on val: top-1 acc" in out
    store = Store(root / "cache.zarr", mode="r")
    emb = store.attrs("llm/priors/embedded")["evaluation"]
    knn = store.attrs("llm/priors/embedded-knn")["evaluation"]
    assert set(knn) == {"train (out-of-fold)", "val", "test"}
    assert knn["val"]["accuracy"] >= 0.9 and knn["val"]["hF"] >= 0.9
    assert knn["train (out-of-fold)"]["accuracy"] >= 0.9
    assert emb["val"]["accuracy"] < 0.5
    assert knn["val"]["hF"] > emb["val"]["hF"] + 0.4


def test_knn_never_shows_a_clip_its_own_label(make_dataset, mrow, tmp_path):
    # one training clip 'u' with unique text labelled fx-a, every other training clip m-m
    rows = [mrow(f"m{i}", "m-m", f"alpha music take {i}", "band") for i in range(12)]
    rows += [
        mrow("u", "fx-a", "zyx qwerty unique phrase", "zyx"),
        mrow("v", "fx-a", "zyx qwerty unique phrase", "zyx"),
    ]
    root = make_dataset(rows, sub="clean")
    split = Split(
        preset="custom",
        fold_seed=0,
        val_seed=0,
        fold=0,
        n_folds=5,
        val_size=0.2,
        dataset="TEST",
        ids_sha256="",
        train=[f"m{i}" for i in range(12)] + ["u"],
        val=["v"],
        test=[],
    )
    split_file = split.save(tmp_path / "split.json")
    # a second dataset that shares clip 'u' (as BSD35k-CS shares clips with BSD10k) and has a new clip 'w'
    other = make_dataset(
        [
            mrow("u", "fx-o", "zyx qwerty unique phrase", "zyx"),
            mrow("w", "fx-o", "zyx qwerty unique phrase", "zyx"),
        ],
        sub="noisy",
        name="NOISY",
    )
    truth = tmp_path / "truth.csv"
    truth.write_text("id,class\nu,fx-a\nw,fx-a\nnot-there,fx-o\n")
    for ds in (root, other):
        assert (
            main(
                [
                    "priors",
                    "--dataset",
                    str(ds),
                    "--provider",
                    "embedded-knn",
                    "--train-dataset",
                    str(root),
                    "--split",
                    str(split_file),
                    "--no-progress",
                    "--set",
                    "llm.knn_k=3",
                    "--truth",
                    str(truth),
                ]
            )
            == 0
        )
    prior, _ = read_priors(Store(root / "cache.zarr", mode="r"), "embedded-knn", ["u", "v", "m0"])
    fx_a = CLASS_INDEX["fx-a"]
    assert prior[0, fx_a] == 0.0  # out-of-fold: 'u' never sees itself
    assert prior[1, fx_a] > 0.9  # the validation twin sees training clip 'u'
    assert prior[2, CLASS_INDEX["m-m"]] > 0.5
    prior2, _ = read_priors(Store(other / "cache.zarr", mode="r"), "embedded-knn", ["u", "w"])
    assert prior2[0, fx_a] == 0.0 and prior2[1, fx_a] > 0.9
    attrs = Store(other / "cache.zarr", mode="r").attrs("llm/priors/embedded-knn")
    assert attrs["n_pool"] == 13 and attrs["n_queries_out_of_fold"] == 1
    # another dataset is scored on all its rows (its own labels: fx-o) and on the truth file (u wrong, w
    # right)
    assert set(attrs["evaluation"]) == {"all", "truth file truth.csv"}
    assert attrs["evaluation"]["truth file truth.csv"]["accuracy"] == 0.5
    assert attrs["evaluation"]["all"]["accuracy"] == 0.0
    assert json.loads(json.dumps(attrs["config"]))["knn_k"] == 3


def test_knn_needs_a_split(make_dataset, mrow, capsys):
    root = make_dataset([mrow("1", "fx-a", "dog", "dog")])
    assert main(["priors", "--dataset", str(root), "--provider", "embedded-knn", "--no-progress"]) == 2
    assert "embedded-knn needs the training clips" in capsys.readouterr().err


def test_knn_prior_equals_a_direct_computation():
    rng = np.random.default_rng(3)
    P = rng.normal(size=(300, 16)).astype(np.float32)
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    Q = np.concatenate([P[:40], rng.normal(size=(30, 16)).astype(np.float32)])
    labels, p_fold = rng.integers(0, 23, 300), rng.integers(0, 5, 300)
    q_fold = np.concatenate([p_fold[:40], -np.ones(30, dtype=np.int64)])
    got = knn_prior(Q, q_fold, P, labels, p_fold, k=7, temperature=0.1, block=16)
    want = np.zeros((70, 23))
    for i in range(70):
        seen = np.flatnonzero(p_fold != q_fold[i]) if q_fold[i] >= 0 else np.arange(300)
        sims = P[seen] @ Q[i]
        top = seen[np.argsort(-sims, kind="stable")[:7]]
        w = np.exp((P[top] @ Q[i]) / 0.1 - ((P[top] @ Q[i]) / 0.1).max())
        np.add.at(want[i], labels[top], w / w.sum())
    assert np.abs(got - want).max() < 1e-5
