"""Demo dataset generator: determinism, real layout, manifests, WAV format, metadata rules, label noise."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cache.manifest import load_class_descriptions, load_manifest, shared_ids
from cache.taxonomy import CLASS_NAMES, CLASSES, TOP_LEVEL_NAMES, top_of
from demo import data as demo_data
from demo.data import CLEAN, EVAL, NOISY, DemoConfig, generate_demo, plan
from demo.text import CONFUSABLE, VOCAB_EN, VOCAB_FOREIGN

SCALE, MAX_DUR = 0.12, 1.0  # small and short: the whole module runs in a few seconds
LABELLED = [
    "sound_id",
    "class",
    "class_idx",
    "class_top",
    "confidence",
    "uploader",
    "license",
    "title",
    "tags",
    "description",
]
BST = ["class_idx", "class_key", "class_key_long", "top_level", "second_level", "description", "examples"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    return out, generate_demo(out, seed=0, scale=SCALE, max_duration=MAX_DUR)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        r = csv.DictReader(fh)
        return list(r.fieldnames or []), list(r)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "demo_config.json"
    }


def test_same_seed_gives_identical_bytes_and_other_seed_differs(demo, tmp_path):
    out, res = demo
    again = generate_demo(tmp_path / "again", seed=0, scale=SCALE, max_duration=MAX_DUR)
    assert not again["skipped"]
    a, b = _tree_hashes(out), _tree_hashes(tmp_path / "again")
    assert a == b
    assert sum(k.endswith(".wav") for k in a) == sum(d["rows"] for d in res["datasets"].values())
    other = generate_demo(tmp_path / "other", seed=1, scale=SCALE, max_duration=MAX_DUR)
    c = _tree_hashes(tmp_path / "other")
    for name in (CLEAN, NOISY, EVAL):
        key = f"{name}/metadata/{name}_metadata.csv"
        assert a[key] != c[key]
    ids0 = {k for k in a if k.startswith(f"{CLEAN}/audio/")}
    ids1 = {k for k in c if k.startswith(f"{CLEAN}/audio/")}
    assert ids0 != ids1
    assert other["datasets"][EVAL]["rows"] >= 23


def test_layout_and_columns_match_the_real_datasets(demo):
    out, res = demo
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CLEAN, NOISY, EVAL, f"{EVAL}-truth.csv", f"{NOISY}-truth.csv", "README.txt", "demo_config.json"]
    )
    for name in (CLEAN, NOISY, EVAL):
        root = out / name
        assert sorted(p.name for p in root.iterdir()) == ["audio", "features", "metadata"]
        assert sorted(p.name for p in (root / "features").iterdir()) == [
            "clap_audio_embeddings",
            "clap_text_embeddings",
        ]
        meta = sorted(p.name for p in (root / "metadata").iterdir())
        header, rows = _rows(root / "metadata" / f"{name}_metadata.csv")
        id_col = "anonymous_id" if name == EVAL else "sound_id"
        if name == EVAL:
            assert meta == [f"{name}_metadata.csv"]
            assert header == ["anonymous_id", "title", "tags", "description"]
            assert all(uuid.UUID(r["anonymous_id"]).version == 4 for r in rows)
        else:
            assert meta == sorted(["BST_description.csv", f"{name}_metadata.csv"])
            assert header == LABELLED
            assert all(r["sound_id"].isdigit() for r in rows)
            bst_header, bst = _rows(root / "metadata" / "BST_description.csv")
            assert bst_header == BST
            keys = {r["class_key"]: r["class_idx"] for r in bst}
            assert set(CLASSES) <= set(keys) and keys["m"] == "100" and keys["fx-other"] == "499"
            assert keys["m-sp"] == "101" and keys["fx-a"] == "405" and keys["ss-s"] == "504"
            for r in rows:  # class_idx: top digit + sub index, 00 top-only, 99 other
                top = top_of(r["class"])
                assert r["class_top"] == top
                assert r["class_idx"][0] == str(("m", "is", "sp", "fx", "ss").index(top) + 1)
                assert r["class_idx"] == keys[r["class"]]
        ids = [r[id_col] for r in rows]
        assert len(ids) == len(set(ids)) == res["datasets"][name]["rows"]
        assert sorted(p.stem for p in (root / "audio").iterdir()) == sorted(ids)
        for kind in ("audio", "text"):
            files = sorted((root / "features" / f"clap_{kind}_embeddings").iterdir())
            assert [p.stem for p in files] == sorted(ids)
            v = np.load(files[0])
            assert v.shape == (512,) and v.dtype == np.float32 and np.isfinite(v).all()
    th, truth = _rows(out / f"{EVAL}-truth.csv")
    assert th == ["id", "class"] and all(r["class"] in CLASSES for r in truth)
    assert len(truth) == res["datasets"][EVAL]["rows"]
    assert "synthetic" in (out / "README.txt").read_text().lower()


def test_manifests_load_with_expected_counts(demo):
    out, res = demo
    d = res["datasets"]
    clean, noisy, ev = (load_manifest(out / n) for n in (CLEAN, NOISY, EVAL))
    for m in (clean, noisy, ev):
        assert m.report.errors == []
    assert len(clean) == d[CLEAN]["rows"] and np.isin(clean.confidence, [1, 2, 3, 4, 5]).all()
    assert set(clean.class_counts().values()) - {0} and min(clean.class_counts().values()) >= 2
    assert len(noisy) == d[NOISY]["targets"] == d[NOISY]["rows"] - d[NOISY]["other"] - d[NOISY]["top_only"]
    assert noisy.report.counts["non_target_other"] == d[NOISY]["other"] > 0
    assert noisy.report.counts["non_target_top-level-only"] == d[NOISY]["top_only"] > 0
    assert np.isnan(noisy.confidence).all()
    assert d[NOISY]["rows"] >= 1.6 * d[CLEAN]["rows"]
    assert not ev.labelled and (ev.labels == -1).all() and len(ev) == d[EVAL]["rows"]
    assert (
        min(
            np.bincount(
                [CLASSES.index(r["class"]) for r in _rows(out / f"{EVAL}-truth.csv")[1]], minlength=23
            )
        )
        >= 1
    )
    # the shared ids: same audio bytes and metadata in both sets
    shared = res["shared_ids"]
    assert len(shared) == round(10 * SCALE)
    assert set(shared) <= set(shared_ids(clean, load_manifest(out / NOISY, keep_non_targets=True)))
    assert set(shared_ids(clean, noisy)) <= set(shared)
    crow = {r["sound_id"]: r for r in _rows(out / CLEAN / "metadata" / f"{CLEAN}_metadata.csv")[1]}
    nrow = {r["sound_id"]: r for r in _rows(out / NOISY / "metadata" / f"{NOISY}_metadata.csv")[1]}
    for i in shared:
        assert (out / CLEAN / "audio" / f"{i}.wav").read_bytes() == (
            out / NOISY / "audio" / f"{i}.wav"
        ).read_bytes()
        assert [crow[i][k] for k in ("title", "tags", "description")] == [
            nrow[i][k] for k in ("title", "tags", "description")
        ]
    descr = load_class_descriptions(out / CLEAN)
    assert sorted(descr) == sorted(CLASSES) and all(v.description and v.examples for v in descr.values())


def test_wav_format_and_durations(demo):
    out, _ = demo
    durations = []
    for name in (CLEAN, NOISY, EVAL):
        for p in sorted((out / name / "audio").iterdir()):
            info = sf.info(p)
            assert (info.samplerate, info.channels, info.subtype, info.format) == (44100, 1, "PCM_16", "WAV")
            durations.append(info.frames / info.samplerate)
    durations = np.array(durations)
    assert durations.min() >= 0.2 - 1e-6 and durations.max() <= MAX_DUR + 1e-6
    x, _ = sf.read(sorted((out / CLEAN / "audio").iterdir())[0], dtype="float32")
    assert 0.01 < np.abs(x).max() <= 1.0  # not silent, not clipped beyond full scale


def test_default_duration_plan_is_skewed_with_a_few_long_clips():
    clips = plan(DemoConfig())  # planning only: no audio is written
    for name, cl in clips.items():
        d = np.array([c.duration for c in cl])
        assert d.min() >= 0.2 and d.max() <= 30.0
        assert (d >= 10).sum() >= 1, name  # exercises multi-window extraction
    d = np.array([c.duration for cl in clips.values() for c in cl])
    assert 0.6 < np.median(d) < 1.5 and np.mean((d >= 0.5) & (d <= 6)) > 0.7
    n_clean = len(clips[CLEAN])
    assert 20 * 23 <= n_clean <= 30 * 23 and 1.8 * n_clean <= len(clips[NOISY]) <= 2.3 * n_clean
    assert 8 * 23 <= len(clips[EVAL]) <= 12 * 23
    assert sum(c.source is not None for c in clips[NOISY]) == 10


def _forbidden_patterns() -> list[re.Pattern]:
    pats = [re.compile(r"(?<![\w-])" + re.escape(c) + r"(?![\w-])", re.I) for c in CLASSES]
    names = set(CLASS_NAMES.values()) | set(TOP_LEVEL_NAMES.values())
    for n in list(names):
        if " " not in n:  # one-word names: also their singular / plural form
            names |= {n.removesuffix("s"), n.removesuffix("s") + "s"}
    return pats + [re.compile(r"\b" + re.escape(n) + r"\b", re.I) for n in names]


def test_metadata_never_names_the_class(demo):
    out, _ = demo
    pats = _forbidden_patterns()
    n = 0
    for name in (CLEAN, NOISY, EVAL):
        for r in _rows(out / name / "metadata" / f"{name}_metadata.csv")[1]:
            text = " | ".join(r[k] for k in ("title", "tags", "description", "uploader") if k in r)
            hits = [p.pattern for p in pats if p.search(text)]
            assert not hits, (name, r.get("sound_id") or r.get("anonymous_id"), hits)
            n += 1
    assert n > 200


def _keywords(code: str) -> list[re.Pattern]:
    words = list(VOCAB_EN[code]) + [w for _, w in VOCAB_FOREIGN[code]]
    return [re.compile(r"(?<!\w)" + re.escape(w.lower()) + r"(?!\w)") for w in words]


def test_metadata_is_informative_for_most_clips_and_misleading_for_some(demo):
    out, _ = demo
    truth = {r["id"]: r["class"] for r in _rows(out / f"{NOISY}-truth.csv")[1]}
    truth.update({r["id"]: r["class"] for r in _rows(out / f"{EVAL}-truth.csv")[1]})
    rows = [
        (r.get("sound_id") or r["anonymous_id"], r)
        for n in (NOISY, EVAL)
        for r in _rows(out / n / "metadata" / f"{n}_metadata.csv")[1]
    ]
    kw = {c: _keywords(c) for c in CLASSES}
    own = other_only = html = foreign = 0
    for cid, r in rows:
        text = " ".join((r["title"], r["tags"], r["description"])).lower().replace("-", " ").replace("_", " ")
        has_own = any(p.search(text) for p in kw[truth[cid]])
        has_other = any(p.search(text) for c in CLASSES if c != truth[cid] for p in kw[c])
        own += has_own
        other_only += has_other and not has_own
        html += (
            ("<a href" in r["description"]) or ("<b>" in r["description"]) or ("&amp;" in r["description"])
        )
        foreign += bool(re.search(r"grabado|aufgenommen|enregistré|[äöüéíóñ]", text))
    n = len(rows)
    assert 0.55 <= own / n <= 0.75, own / n  # informative clips (~60%) plus a few chance hits
    assert 0.08 <= other_only / n <= 0.25, other_only / n  # misleading clips (~15%)
    assert html / n > 0.1 and foreign / n > 0.05


def test_noisy_label_fraction_and_plausible_confusions(demo):
    out, res = demo
    truth = {r["id"]: r["class"] for r in _rows(out / f"{NOISY}-truth.csv")[1]}
    rows = _rows(out / NOISY / "metadata" / f"{NOISY}_metadata.csv")[1]
    targets = [r for r in rows if r["class"] in CLASSES]
    wrong = [r for r in targets if r["class"] != truth[r["sound_id"]]]
    assert abs(len(wrong) / len(targets) - 0.4) <= 0.02
    assert len(wrong) == res["datasets"][NOISY]["wrong_labels"]
    plausible = [
        r
        for r in wrong
        if top_of(r["class"]) == top_of(truth[r["sound_id"]])
        or r["class"] in CONFUSABLE[truth[r["sound_id"]]]
    ]
    assert len(plausible) >= 0.85 * len(wrong)
    sibling = [r for r in wrong if top_of(r["class"]) == top_of(truth[r["sound_id"]])]
    assert len(sibling) >= 0.4 * len(wrong)
    non_targets = [r for r in rows if r["class"] not in CLASSES]
    for r in non_targets:  # *-other and top-level-only rows keep the clip's true top level
        assert top_of(r["class"]) == top_of(truth[r["sound_id"]])
        assert r["class_idx"].endswith("99" if r["class"].endswith("-other") else "00")


def test_shipped_feature_stand_ins_are_deterministic_functions_of_the_clip():
    rng = lambda: np.random.default_rng(5)  # noqa: E731
    x = np.sin(np.arange(44100, dtype=np.float32) * 0.05) * 0.3
    a1, a2 = demo_data.audio_embedding(x, rng(), 0.1), demo_data.audio_embedding(x, rng(), 0.1)
    assert np.array_equal(a1, a2) and a1.shape == (512,) and a1.dtype == np.float32
    b = demo_data.audio_embedding(
        np.random.default_rng(0).standard_normal(44100).astype(np.float32) * 0.3, rng(), 0.1
    )
    assert np.linalg.norm(a1 - b) > 5 * 0.1 * np.sqrt(512)  # differs by much more than the noise
    t1 = demo_data.text_embedding("dog bark, birdsong", rng(), 0.0)
    t2 = demo_data.text_embedding("Dog  BARK birdsong", rng(), 0.0)  # same bag of words
    t3 = demo_data.text_embedding("rain, thunder", rng(), 0.0)
    assert np.allclose(t1, t2) and not np.allclose(t1, t3)
    assert np.array_equal(demo_data.text_embedding("", rng(), 0.0), np.zeros(512, np.float32))


def test_cli_skips_when_up_to_date_and_keeps_other_files(tmp_path, capsys):
    out = tmp_path / "d"
    args = ["--out", str(out), "--seed", "3", "--scale", "0.04", "--max-duration", "0.3", "--no-progress"]
    assert demo_data.main(args) == 0
    csv_path = out / CLEAN / "metadata" / f"{CLEAN}_metadata.csv"
    before = csv_path.stat().st_mtime_ns, csv_path.read_bytes()
    (out / CLEAN / "cache.zarr").mkdir()
    assert demo_data.main(args) == 0
    assert "already generated" in capsys.readouterr().out
    assert csv_path.stat().st_mtime_ns == before[0]
    assert (
        demo_data.main(args + ["--set", "demo_data.label_noise=0.2"]) == 0
    )  # new config: regenerated in place
    assert (out / CLEAN / "cache.zarr").is_dir()  # work stored beside the data is kept
    assert csv_path.read_bytes() == before[1]  # the clean set does not depend on label_noise
    assert demo_data.main(["--out", str(out), "--set", "demo_data.no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err


def test_refuses_folders_it_did_not_write(tmp_path):
    out = tmp_path / "d"
    (out / NOISY / "metadata").mkdir(parents=True)
    (out / NOISY / "metadata" / "mine.csv").write_text("x\n")
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_demo(out, scale=0.04, max_duration=0.3)
    assert (out / NOISY / "metadata" / "mine.csv").exists()
    res = generate_demo(out, scale=0.04, max_duration=0.3, overwrite=True)
    assert not (out / NOISY / "metadata" / "mine.csv").exists() and res["datasets"][NOISY]["rows"] > 0


def test_config_from_toml_and_validation(tmp_path):
    p = tmp_path / "demo.toml"
    p.write_text("[demo_data]\nseed = 4\nscale = 0.5\nlabel_noise = 0.3\n")
    cfg = DemoConfig.from_toml(p, scale=0.25)
    assert (cfg.seed, cfg.scale, cfg.label_noise) == (4, 0.25, 0.3)
    p.write_text("seed = 1\nlabel_nois = 0.3\n")
    with pytest.raises(ValueError, match="label_nois"):
        DemoConfig.from_toml(p)
    with pytest.raises(ValueError, match="max_duration"):
        DemoConfig(max_duration=60)
    with pytest.raises(ValueError, match="seed: expected an integer"):  # TOML values are type-checked
        p.write_text("seed = 1.5\n")
        DemoConfig.from_toml(p)


@pytest.mark.parametrize(
    "item,message",
    [
        ("demo_data.scale=abc", "scale: expected a number"),
        ("demo_data.bogus=1", "bogus"),
        ("scale", "KEY=VALUE"),
        ("scale=0.5", "write --set demo_data.scale=0.5"),
    ],
)
def test_cli_set_values_are_checked(tmp_path, capsys, item, message):
    from demo.data import main

    assert main(["--out", str(tmp_path / "o"), "--set", item]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_module_entry_point(tmp_path):
    """``python -m demo`` runs the generator (PYTHONPATH: the checkout, whatever is installed)."""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    out = tmp_path / "d"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo",
            "--out",
            str(out),
            "--seed",
            "3",
            "--scale",
            "0.04",
            "--max-duration",
            "0.3",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert f"{CLEAN}: " in r.stdout
    assert load_manifest(out / CLEAN).labelled and "`python -m demo`" in (out / "README.txt").read_text()
