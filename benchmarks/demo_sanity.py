"""Is the demo data useful? Simple classifiers per modality on the demo datasets.

Trains scikit-learn LogisticRegression on the clean demo set and scores the evaluation set
against OUT/BSD2k-demo-truth.csv, for: log-mel mean/std of the audio (torchaudio), TF-IDF of
title+tags+description, their concatenation, and the shipped-feature stand-ins
(features/clap_{audio,text}_embeddings). Audio alone should find the top level but confuse
siblings, text alone should be moderate, and the concatenation should beat both.

    python benchmarks/demo_sanity.py --demo DIR [--json OUT.json]

Generate DIR first with ``python -m demo --out DIR`` (or pass --generate).
Prints a table (accuracy, top-level accuracy, hF with never-predicted="zero") and writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import soundfile as sf
import torch
import torchaudio
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # demo/ is a top-level folder of the checkout, not an installed package

from cache.manifest import Manifest, load_manifest  # noqa: E402
from cache.metric import hierarchical_scores  # noqa: E402
from cache.taxonomy import CLASS_INDEX  # noqa: E402
from demo.data import CLEAN, EVAL, generate_demo  # noqa: E402

_MEL = torchaudio.transforms.MelSpectrogram(sample_rate=44100, n_fft=2048, hop_length=882, n_mels=64)


def logmel_meanstd(paths: list[Path]) -> np.ndarray:
    out = []
    for p in paths:
        x, sr = sf.read(p, dtype="float32")
        lm = torch.log(_MEL(torch.from_numpy(x)) + 1e-8)
        out.append(torch.cat([lm.mean(1), lm.std(1)]).numpy())
    return np.stack(out)


def shipped(m: Manifest, kind: str) -> np.ndarray:
    return np.stack([np.load(m.root / "features" / f"clap_{kind}_embeddings" / f"{i}.npy") for i in m.ids])


def score(name: str, clf, x_tr, y_tr, x_te, y_te) -> dict:
    clf.fit(x_tr, y_tr)
    return score_pred(name, y_te, clf.predict(x_te))


def score_pred(name: str, y_te, pred) -> dict:
    s = hierarchical_scores(y_te, pred, never_predicted="zero")
    return {"features": name, "accuracy": s.accuracy, "top_accuracy": s.top_accuracy, "hF": s.hF}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", required=True, type=Path, help="demo output folder")
    ap.add_argument("--generate", action="store_true", help="generate the demo (seed 0, scale 1) first")
    ap.add_argument(
        "--json", type=Path, default=None, help="write the results here (default DEMO/demo_sanity.json)"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.generate:
        res = generate_demo(args.demo, progress=True)
        print(f"generated in {res['seconds']} s ({res['audio_bytes'] / 1e6:.1f} MB WAV)")
    t0 = time.perf_counter()
    train = load_manifest(args.demo / CLEAN)
    test = load_manifest(args.demo / EVAL)
    with open(args.demo / f"{EVAL}-truth.csv", newline="") as fh:
        truth = {r["id"]: CLASS_INDEX[r["class"]] for r in csv.DictReader(fh)}
    y_tr, y_te = train.labels, np.array([truth[i] for i in test.ids])
    print(
        f"train {len(train)} clips ({CLEAN}), test {len(test)} clips ({EVAL}); chance accuracy ~{1 / 23:.3f}"
    )

    a_tr, a_te = logmel_meanstd(train.audio_paths), logmel_meanstd(test.audio_paths)
    sc = StandardScaler().fit(a_tr)
    a_tr, a_te = sc.transform(a_tr), sc.transform(a_te)
    text = lambda m: [m.metadata_text(i) for i in range(len(m))]  # noqa: E731
    tf = TfidfVectorizer(sublinear_tf=True, min_df=1, strip_accents="unicode").fit(text(train))
    t_tr, t_te = tf.transform(text(train)), tf.transform(text(test))
    w = 1.0  # weight of the (unit-norm) TF-IDF block against the standardised audio block
    f_tr = sp.hstack([sp.csr_matrix(a_tr) / np.sqrt(a_tr.shape[1]), w * t_tr]).tocsr()
    f_te = sp.hstack([sp.csr_matrix(a_te) / np.sqrt(a_te.shape[1]), w * t_te]).tocsr()
    ca_tr, ca_te = shipped(train, "audio"), shipped(test, "audio")
    ct_tr, ct_te = shipped(train, "text"), shipped(test, "text")
    sc2 = StandardScaler().fit(np.hstack([ca_tr, ct_tr]))

    lr = lambda c=1.0: LogisticRegression(C=c, max_iter=3000)  # noqa: E731
    audio_lr, text_lr = lr(0.3).fit(a_tr, y_tr), lr(10.0).fit(t_tr, y_tr)
    late = (audio_lr.predict_log_proba(a_te) + text_lr.predict_log_proba(t_te)).argmax(1)
    rows = [
        score_pred("log-mel mean/std (audio)", y_te, audio_lr.predict(a_te)),
        score_pred("TF-IDF metadata (text)", y_te, text_lr.predict(t_te)),
        score("log-mel + TF-IDF (concat)", lr(1.0), f_tr, y_tr, f_te, y_te),
        score_pred("log-mel + TF-IDF (late: sum of log-probs)", y_te, audio_lr.classes_[late]),
        score(
            "shipped clap_audio stand-in",
            lr(0.1),
            StandardScaler().fit(ca_tr).transform(ca_tr),
            y_tr,
            StandardScaler().fit(ca_tr).transform(ca_te),
            y_te,
        ),
        score(
            "shipped clap_text stand-in",
            lr(0.1),
            StandardScaler().fit(ct_tr).transform(ct_tr),
            y_tr,
            StandardScaler().fit(ct_tr).transform(ct_te),
            y_te,
        ),
        score(
            "shipped audio + text (concat)",
            lr(0.1),
            sc2.transform(np.hstack([ca_tr, ct_tr])),
            y_tr,
            sc2.transform(np.hstack([ca_te, ct_te])),
            y_te,
        ),
    ]
    print("\n| features | accuracy | top-level accuracy | hF (zero) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['features']} | {r['accuracy']:.3f} | {r['top_accuracy']:.3f} | {r['hF']:.3f} |")
    out = args.json or args.demo / "demo_sanity.json"
    out.write_text(
        json.dumps(
            {
                "train": len(train),
                "test": len(test),
                "results": rows,
                "seconds": round(time.perf_counter() - t0, 1),
            },
            indent=1,
        )
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
