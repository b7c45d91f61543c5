"""cache.tables: the one owner of table paths, with each kind's reader and writer."""

import numpy as np
import pytest

from cache import tables
from cache.store import Store


def test_paths_of_every_kind():
    assert tables.embeddings_path("beats", "1a2b3c4d") == "embeddings/beats@1a2b3c4d"
    assert tables.embeddings_path("minilm", "none", "metadata") == "embeddings/minilm@none~metadata"
    assert tables.priors_path("openai") == "llm/priors/openai"
    assert tables.summaries_path("openai") == "llm/summaries/openai"
    assert tables.llm_path("priors", "x") == "llm/priors/x"
    assert tables.llm_path("summaries", "x") == "llm/summaries/x"
    assert tables.logits_path("heads/t/s1") == "logits/heads/t/s1"
    assert tables.pseudo_labels_path("stage1") == "pseudo_labels/stage1"
    assert tables.name_of("logits/heads/t/s1", tables.LOGITS) == "heads/t/s1"
    with pytest.raises(ValueError):
        tables.llm_path("logits", "x")
    with pytest.raises(ValueError):
        tables.name_of("pseudo_labels/a", tables.LOGITS)


def test_round_trips_and_listing(tmp_path):
    store = Store(tmp_path / "s.zarr")
    ids = ["b", "a", "c"]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 23)).astype(np.float32)
    probs = rng.dirichlet(np.ones(23), size=3).astype(np.float32)
    assert tables.write_logits(store, "r/1", ids, logits, attrs={"seed": 3}) == "logits/r/1"
    tables.write_logits(store, "r/2", ids, logits * 2)
    tables.write_pseudo_labels(store, "p", ids, probs)
    missing = np.array([False, True, False])
    tables.write_priors(store, "q", ids, probs, missing, extra={"reason": ["", "no answer", ""]})
    tables.write_summaries(store, "q", ids, ["x", "", "z"], missing)

    ask = ["c", "b"]  # readers join by id, in the order asked for
    np.testing.assert_array_equal(tables.read_logits(store, "r/1", ask), logits[[2, 0]])
    np.testing.assert_array_equal(tables.read_pseudo_labels(store, "p", ask), probs[[2, 0]])
    prior, miss = tables.read_priors(store, "q", ["a", "c"])
    np.testing.assert_array_equal(prior, probs[[1, 2]])
    assert miss.tolist() == [True, False]
    texts, miss = tables.read_summaries(store, "q", ["c", "a"])
    assert texts == ["z", ""] and miss.tolist() == [False, True]
    assert store.attrs("logits/r/1")["seed"] == 3
    assert sorted(tables.table_names(store, tables.LOGITS)) == ["r/1", "r/2"]
    assert tables.table_names(store, tables.PRIORS) == ["q"]
    with pytest.raises(ValueError, match=r"\(N, 23\)"):
        tables.write_logits(store, "bad", ids, logits[:, :5])
