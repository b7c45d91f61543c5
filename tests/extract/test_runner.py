"""The embeddings runner in-process on a tiny generated dataset (logmel, minilm, tiny CLAP)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cache.config import dump_toml, load_config, to_dict
from cache.errors import SchemaError
from cache.feature_matrix import open_features, read_features
from cache.manifest import load_manifest
from cache.schema import FAILED, OK
from cache.store import Store
from extract.__main__ import main as cli_main
from extract.audio import load_audio
from extract.backbones import BackboneConfig, build_backbone
from extract.config import EmbeddingsConfig, parse_config
from extract.runner import ExtractionError, run_embeddings
from extract.text import clean_metadata
from extract.windowing import embed_clips

IDS = ["101", "102", "103", "104", "105", "106", "107", "108", "109", "110"]
N_WINDOWS = [1, 1, 3, 1, 0, 1, 1, 0, 1, 1]
SECONDS = [1.2, 0.02, 21.0, 3.0, 0.0, 10.0, 2.5, 0.0, 0.7, 5.0]
GROUP = "embeddings/logmel@none"


def _cfg(root, **kw) -> EmbeddingsConfig:
    base = dict(dataset=root, backbone="logmel", chunk_rows=3, batch_size=4, num_workers=0, progress=False)
    base.update(kw)
    return EmbeddingsConfig(**base)


@pytest.fixture(scope="module")
def ds(mixed_dataset):
    return mixed_dataset


@pytest.fixture(scope="module")
def logmel_run(ds):
    summary = run_embeddings(_cfg(ds, num_workers=2))  # decoding in two DataLoader workers
    return summary, Store(ds / "cache.zarr").read_table(GROUP)


def test_logmel_rows_values_and_failures(ds, logmel_run):
    summary, t = logmel_run
    assert t.ids.tolist() == IDS
    assert (summary.n_rows, summary.n_ok, summary.n_failed) == (10, 8, 2)
    assert t["status"].tolist() == [OK if n else FAILED for n in N_WINDOWS]
    assert t["n_windows"].tolist() == N_WINDOWS
    np.testing.assert_allclose(t["duration"], SECONDS, atol=1e-4)
    assert dict(summary.failures).keys() == {"105", "108"}
    assert (
        "corrupt or unreadable" in dict(summary.failures)["105"]
        and "105.wav" in dict(summary.failures)["105"]
    )
    assert "empty file" in dict(summary.failures)["108"]
    assert "105: " in summary.format() and "empty file" in summary.format()
    assert sorted((i, r) for _, i, r in Store(ds / "cache.zarr").failures() if _ == GROUP) == sorted(
        summary.failures
    )
    # every ok row equals the plain per-clip path: load_audio + embed_clips
    bb = build_backbone("logmel")
    paths = {i: ds / "audio" / f"{i}.wav" for i in IDS}
    for k, cid in enumerate(IDS):
        if t["status"][k] == OK:
            ref = embed_clips(bb, [load_audio(paths[cid], 16000)])[0].numpy()
            np.testing.assert_allclose(t["audio"][k], ref, rtol=1e-5, atol=1e-5)
        else:
            assert not t["audio"][k].any() and t["error"][k]
    # the reader of the heads tier sees the same rows and the failure mask
    f = read_features(Store(ds / "cache.zarr", mode="r"), [GROUP], IDS[::-1])
    assert f.X.shape == (10, 256) and f.ok.tolist() == [n > 0 for n in N_WINDOWS[::-1]]
    # the lazy reader gives the same rows, read on demand
    lazy = open_features(Store(ds / "cache.zarr", mode="r"), [GROUP], IDS[::-1])
    assert lazy.shape == (10, 256) and lazy.blocks == f.blocks and lazy.ok.tolist() == f.ok.tolist()
    np.testing.assert_array_equal(lazy[[9, 0, 0, 4]], f.X[[9, 0, 0, 4]])
    np.testing.assert_array_equal(lazy[5], f.X[5])
    np.testing.assert_array_equal(lazy.to_memory().X, f.X)


def test_provenance_attrs(ds, logmel_run):
    _, t = logmel_run
    a = t.attrs
    assert a["producer"] == "extract.embeddings" and a["complete"] is True
    assert (a["backbone"], a["variant"], a["checkpoint_sha256"]) == ("logmel", "mel64", None)
    assert (a["sample_rate"], a["window_samples"], a["padding"]) == (16000, 160000, "zero")
    assert "Slaney" in a["front_end"] and a["text_source"] is None
    m = load_manifest(ds, require_audio=False, keep_non_targets=True)
    assert a["manifest_digest"] == m.digest() and a["n_clips"] == 10
    assert a["config"]["chunk_rows"] == 3 and a["config"]["dataset"] == str(ds)
    assert a["code_version"] and a["created"] and a["finalized"]
    assert a["columns"] == {
        "audio": [[256], "float32"],
        "duration": [[], "float32"],
        "n_windows": [[], "int32"],
    }


def test_rerun_redoes_only_a_chunk_that_fails_verification(ds, logmel_run):
    _, before = logmel_run
    store = Store(ds / "cache.zarr")
    g = store.root[GROUP]
    g["audio"][3:6] = np.full((3, 256), np.nan, dtype=np.float32)  # chunk 1 damaged, still marked done
    summary = run_embeddings(_cfg(ds))
    assert (summary.chunks_skipped, summary.chunks_written) == (3, 1)
    after = store.read_table(GROUP)
    np.testing.assert_allclose(after["audio"], before["audio"], rtol=1e-6, atol=1e-6)
    assert after["status"].tolist() == before["status"].tolist()
    assert run_embeddings(_cfg(ds)).chunks_written == 0  # complete: nothing left to do


def test_batching_workers_and_chunking_do_not_change_results(ds, logmel_run, tmp_path):
    _, ref = logmel_run
    for name, kw in (
        ("a", dict(batch_size=1, chunk_rows=10)),
        ("b", dict(batch_size=2, chunk_rows=4, num_workers=2, loader="threads")),
        ("c", dict(batch_size=0)),  # 0: the backbone's default, recorded as resolved
    ):
        run_embeddings(_cfg(ds, store=tmp_path / f"{name}.zarr", **kw))
        t = Store(tmp_path / f"{name}.zarr").read_table(GROUP)
        assert t.attrs["config"]["batch_size"] == {"a": 1, "b": 2, "c": 2}[name]  # logmel's CPU default is 2
        assert t.attrs["config"]["loader"] == "threads"  # "auto" is recorded as what it resolved to
        assert t.ids.tolist() == ref.ids.tolist() and t["error"].tolist() == ref["error"].tolist()
        assert t["n_windows"].tolist() == ref["n_windows"].tolist()
        np.testing.assert_allclose(t["audio"], ref["audio"], rtol=1e-5, atol=1e-5)


def test_changed_settings_refuse_then_overwrite(ds, tmp_path):
    store = tmp_path / "o.zarr"
    run_embeddings(_cfg(ds, store=store))
    with pytest.raises(SchemaError, match="dtype.*--overwrite"):
        run_embeddings(_cfg(ds, store=store, dtype="float16"))
    run_embeddings(_cfg(ds, store=store, dtype="float16", overwrite=True))
    t = Store(store).read_table(GROUP)
    assert t["audio"].dtype == np.float16 and t.attrs["dtype"] == "float16"


def test_minilm_writes_only_text(ds, tmp_path):
    from extract.backbones.minilm import MiniLMEncoder

    store = tmp_path / "m.zarr"
    summary = run_embeddings(_cfg(ds, store=store, backbone="minilm", text_source="metadata", batch_size=3))
    sha = MiniLMEncoder().provenance()["weights_sha256"]
    t = Store(store).read_table(f"embeddings/minilm@{sha[:8]}~metadata")  # named by the weights' hash
    assert t.attrs["columns"] == {"text": [[384], "float32"]} and summary.n_failed == 0
    assert t.attrs["checkpoint_sha256"] == sha and len(sha) == 64
    m = load_manifest(ds, require_audio=False, keep_non_targets=True)
    texts = [clean_metadata(a, b, c) for a, b, c in zip(m.title, m.tags, m.description, strict=True)]
    assert "<b>" not in texts[0] and "https" not in texts[0] and texts[0].startswith("Clip 101.")
    np.testing.assert_allclose(t["text"], MiniLMEncoder().encode(texts), rtol=1e-5, atol=1e-5)
    assert t.attrs["text_source"] == "metadata"


def test_summary_text_source(ds, tmp_path):
    store_path = tmp_path / "t.zarr"
    store = Store(store_path)
    summaries = {cid: f"a recording of thing number {cid}" for cid in IDS}
    store.write_table(
        "llm/summaries/s1", IDS, {"text": [summaries[i] for i in IDS], "missing": np.zeros(10, bool)}
    )
    cfg = _cfg(ds, store=store_path, backbone="tiny", variant="clap", text_source="summary")
    run_embeddings(cfg)
    t = store.read_table("embeddings/tiny@none~summary")
    assert t.attrs["summaries"] == "s1" and set(t.attrs["columns"]) == {
        "audio",
        "text",
        "duration",
        "n_windows",
    }
    torch.manual_seed(0)
    bb = build_backbone(BackboneConfig("tiny", variant="clap"))
    with torch.no_grad():
        ref = bb.embed_text([summaries[i] for i in IDS]).numpy()
        audio = embed_clips(bb, [load_audio(ds / "audio" / "101.wav", 16000)])[0].numpy()
    ok = t["status"] == OK
    np.testing.assert_allclose(t["text"][ok], ref[ok], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t["audio"][0], audio, rtol=1e-5, atol=1e-5)
    assert not t["text"][~ok].any()

    # a summary marked missing is an error naming the clip; two tables need --summaries
    missing = np.zeros(10, bool)
    missing[[2, 6]] = True
    store.write_table("llm/summaries/s2", IDS, {"text": [""] * 10, "missing": missing})
    with pytest.raises(ExtractionError, match="several summary tables"):
        run_embeddings(
            _cfg(ds, store=store_path, backbone="tiny", variant="clap", text_source="summary", overwrite=True)
        )
    with pytest.raises(ExtractionError, match=r"2 clip\(s\): 103, 107"):
        run_embeddings(
            _cfg(
                ds,
                store=store_path,
                backbone="tiny",
                variant="clap",
                text_source="summary",
                summaries="s2",
                overwrite=True,
            )
        )


def test_text_source_rules(ds, tmp_path):
    with pytest.raises(ExtractionError, match="text tower: pass --text-source"):
        run_embeddings(_cfg(ds, store=tmp_path / "x.zarr", backbone="minilm"))
    with pytest.raises(ExtractionError, match="no text tower"):
        run_embeddings(_cfg(ds, store=tmp_path / "x.zarr", text_source="metadata"))
    with pytest.raises(ExtractionError, match="no llm/summaries"):
        run_embeddings(_cfg(ds, store=tmp_path / "x.zarr", backbone="minilm", text_source="summary"))


def test_cli_config_set_and_shorthands(ds, tmp_path, capsys):
    toml = tmp_path / "e.toml"
    toml.write_text(
        f'dataset = "{ds}"\nbackbone = "logmel"\nchunk_rows = 7\nnum_workers = 0\n'
        f'batch_size = 3\nstore = "{tmp_path / "c.zarr"}"\n\n[arch]\nn = 1\nm = 2\n'
    )
    # defaults < file < --set < shorthand flags; --arch k=v is --set arch.k=v
    cfg = parse_config(
        [
            "--config",
            str(toml),
            "--set",
            "chunk_rows=9",
            "--set",
            "batch_size=5",
            "--chunk-rows",
            "4",
            "--arch",
            "n=3",
            "--set",
            "arch.k=[1, 2]",
            "--allow-missing",
            "a.*",
            "--no-autocast",
        ]
    )
    assert (cfg.chunk_rows, cfg.batch_size, cfg.num_workers, cfg.backbone) == (4, 5, 0, "logmel")
    assert (
        cfg.arch == {"n": 3, "m": 2, "k": [1, 2]} and cfg.allow_missing == ["a.*"] and cfg.autocast is False
    )
    assert cfg.dataset == ds and cfg.store == tmp_path / "c.zarr"
    # --override is the deprecated name of --arch: same result and a one-line notice
    assert parse_config(["--config", str(toml), "--override", "n=3"]).arch == {"n": 3, "m": 2}
    assert capsys.readouterr().err.count("--override is deprecated; use --arch") == 1

    toml.write_text("\n".join(toml.read_text().splitlines()[:6]) + "\n")  # logmel takes no arch overrides
    assert cli_main(["embeddings", "--config", str(toml), "--set", "chunk_rows=5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "embeddings/logmel@none" in out and "8 ok, 2 failed" in out
    recorded = Store(tmp_path / "c.zarr").attrs(GROUP)["config"]
    assert recorded["chunk_rows"] == 5 and recorded["batch_size"] == 3 and recorded["num_workers"] == 0
    # the recorded (resolved) configuration round-trips through cache.config's TOML writer and reader
    again = tmp_path / "again.toml"
    again.write_text(dump_toml(recorded))
    resolved = load_config(EmbeddingsConfig, again)
    assert to_dict(resolved) == recorded and resolved == parse_config(["--config", str(again)])
    assert resolved.dataset == ds and resolved.progress is False

    bad = tmp_path / "bad.toml"
    bad.write_text('backbone = "logmel"\nbatchsize = 3\n')
    with pytest.raises(ValueError, match="unknown key 'batchsize'"):
        parse_config(["--config", str(bad)])
    with pytest.raises(ValueError, match="batch_size: expected an integer"):
        parse_config(["--dataset", str(ds), "--backbone", "logmel", "--set", "batch_size=many"])
    assert cli_main(["embeddings", "--dataset", str(ds), "--backbone", "logmel", "--set", "arch"]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err
    assert cli_main(["embeddings", "--dataset", str(ds), "--backbone", "nope", "--no-progress"]) == 2
    assert "unknown backbone 'nope'" in capsys.readouterr().err
    assert cli_main(["frobnicate"]) == 2


def test_tags_text_source(audio_dataset, tmp_path):
    from extract.backbones.minilm import MiniLMEncoder
    from extract.text import tags_text

    tags = ["metal; impact, hit", "", " , ;", "Field-Recording,rain , water"]
    assert [tags_text(t) for t in tags] == ["metal impact hit", "", "", "Field-Recording rain water"]
    root = audio_dataset(
        [{"id": str(300 + i), "seconds": 0.5, "tags": t} for i, t in enumerate(tags)], shipped=False
    )
    cfg = parse_config(
        [
            "--dataset",
            str(root),
            "--backbone",
            "minilm",
            "--text-source",
            "tags",
            "--no-progress",
            "--store",
            str(tmp_path / "t.zarr"),
        ]
    )
    assert cfg.text_source == "tags"
    summary = run_embeddings(cfg)
    assert summary.n_failed == 0  # a clip without tags embeds the empty text
    sha = MiniLMEncoder().provenance()["weights_sha256"]
    t = Store(tmp_path / "t.zarr").read_table(f"embeddings/minilm@{sha[:8]}~tags")
    assert t.attrs["text_source"] == "tags" and t.attrs["config"]["text_source"] == "tags"
    expected = MiniLMEncoder().encode(["metal impact hit", "", "", "Field-Recording rain water"])
    np.testing.assert_allclose(t["text"], expected, rtol=1e-5, atol=1e-5)
    assert np.array_equal(t["text"][1], t["text"][2])
    # an audio–text backbone: the text column holds the tags' embeddings
    run_embeddings(_cfg(root, store=tmp_path / "t.zarr", backbone="tiny", variant="clap", text_source="tags"))
    t = Store(tmp_path / "t.zarr").read_table("embeddings/tiny@none~tags")
    torch.manual_seed(0)
    bb = build_backbone(BackboneConfig("tiny", variant="clap"))
    with torch.no_grad():
        ref = bb.embed_text(["metal impact hit", "", "", "Field-Recording rain water"]).numpy()
    np.testing.assert_allclose(t["text"], ref, rtol=1e-5, atol=1e-5)


def test_progress_off_a_terminal_is_a_few_log_lines(ds, tmp_path, capsys):
    """Off a terminal (here: captured stderr) the progress bar writes plain lines at most every few
    seconds and one summary line, not one line per refresh."""
    store = tmp_path / "p.zarr"
    assert (
        cli_main(
            [
                "embeddings",
                "--dataset",
                str(ds),
                "--backbone",
                "logmel",
                "--store",
                str(store),
                "--set",
                "chunk_rows=1",
                "--set",
                "batch_size=1",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "\r" not in err  # no carriage-return redraws in a log
    progress_lines = [ln for ln in err.splitlines() if ln.startswith("logmel@none:")]
    assert progress_lines[-1].startswith("logmel@none: done 10/10 clip in ")
    assert len(progress_lines) <= 3


@pytest.mark.parametrize(
    "code, hint", [(28, "the disk is full"), (30, "put the cache store elsewhere with --store")]
)
def test_disk_full_and_read_only_store_are_one_line(ds, tmp_path, capsys, monkeypatch, code, hint):
    """ENOSPC / EROFS while writing the store: exit 2, one line naming the file and what to do."""
    import os

    import extract.runner as runner

    def fail(*_a, **_k):
        raise OSError(code, os.strerror(code), str(tmp_path / "s.zarr" / "embeddings"))

    monkeypatch.setattr(runner, "run_embeddings", fail)
    assert cli_main(["embeddings", "--dataset", str(ds), "--backbone", "logmel", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert str(tmp_path / "s.zarr" / "embeddings") in err and hint in err


def test_closed_output_pipe_ends_quietly():
    """``python -m extract … | head`` whose reader is gone: no BrokenPipeError traceback, exit 141."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run(
            [sys.executable, "-m", "extract", "--help"],
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(Path(__file__).resolve().parents[2]),
            timeout=120,
        )
    finally:
        os.close(w)
    assert "Traceback" not in p.stderr and p.returncode == 141
