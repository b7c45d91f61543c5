"""The ported official baseline: network shapes, its loss on hand-computed examples, the masking
augmentation, the training loop's schedule and early stopping, and a whole run on a synthetic store."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from cache.schema import OK
from cache.store import Store, default_store_path
from cache.taxonomy import CLASS_TOP_INDEX, CLASSES, NUM_CLASSES
from heads.baseline import BaselineConfig, BaselineTrain, baseline_logits, run_baseline, train_baseline
from heads.baseline_model import BaselineNet, HierarchicalProxyLoss, mask_augment
from testkit.bsd_dataset import LABELLED_COLUMNS, labelled_row, write_metadata


def _linear(i, o):
    return i * o + o


def _bn(d):
    return 2 * d


def test_network_shapes_and_parameter_count():
    net = BaselineNet([512, 512], hidden=128, dropout=0.1).eval()
    a, t = torch.randn(5, 512), torch.randn(5, 512)
    z = net(a, t)
    assert z.shape == (5, 64)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))
    width = max(512, 2 * 128)  # 512
    block = lambda d, h: _linear(d, h) + _bn(h) + _linear(h, d) + _bn(d)  # noqa: E731
    encoder = (
        _bn(512)
        + _linear(512, width)
        + 3 * block(width, 2 * width)
        + _linear(width, width // 2)
        + _linear(width // 2, 128)
        + _bn(128)
    )
    fusion = _linear(256, 128) + _linear(128, 2)
    projector = _linear(128, 256) + _linear(256, 128) + _linear(128, 64)
    classifier = 2 * block(64, 128)
    assert (
        sum(p.numel() for p in net.parameters()) == 2 * encoder + fusion + projector + classifier == 7_316_674
    )
    # the fusion weights are a softmax over the two modalities
    feats = [enc(x) for enc, x in zip(net.encoders, (a, t), strict=True)]
    fused, w = net.fusion(*feats)
    torch.testing.assert_close(w.sum(1), torch.ones(5))
    torch.testing.assert_close(fused, feats[0] * w[:, :1] + feats[1] * w[:, 1:])
    # one modality: no fusion module
    single = BaselineNet([16], hidden=8).eval()
    assert single.fusion is None and single(torch.randn(4, 16)).shape == (4, 4)
    with pytest.raises(ValueError, match="one or two modalities"):
        BaselineNet([4, 4, 4])


def _set_proxies(loss, child, parent):
    with torch.no_grad():
        loss.child.copy_(torch.as_tensor(child, dtype=torch.float32))
        loss.parent.copy_(torch.as_tensor(parent, dtype=torch.float32))


def test_proxy_loss_on_hand_computed_examples():
    assert (
        HierarchicalProxyLoss(5).temperature == 0.07
    )  # the baseline's; a milder one keeps the numbers large
    tau = 0.5
    loss = HierarchicalProxyLoss(5, temperature=tau)
    eye = np.eye(5)
    # parents: the unit vectors (scaled: proxies are normalised); each class's proxy = its parent's
    _set_proxies(loss, 3 * eye[CLASS_TOP_INDEX], 2 * eye)
    y = torch.tensor([0, CLASSES.index("ss-n")])
    z = torch.as_tensor(eye[CLASS_TOP_INDEX[y.numpy()]], dtype=torch.float32)
    n_top = np.bincount(CLASS_TOP_INDEX)
    child_ce = np.mean(
        [math.log(n + (NUM_CLASSES - n) * math.exp(-1 / tau)) for n in n_top[CLASS_TOP_INDEX[y.numpy()]]]
    )
    parent_ce = math.log(1 + 4 * math.exp(-1 / tau))
    terms = loss.terms(z, y)
    assert terms["child"].item() == pytest.approx(child_ce, rel=1e-5)
    assert terms["parent"].item() == pytest.approx(parent_ce, rel=1e-5)
    assert terms["child_to_parent"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["sibling"].item() == pytest.approx(1 - 0.4)  # identical siblings: similarity 1
    assert terms["parent_sep"].item() == pytest.approx(0.0, abs=1e-6)  # orthogonal parents
    assert loss(z, y).item() == pytest.approx(child_ce + 0.4 * parent_ce + 0.15 * 0.6, rel=1e-5)
    # all parents equal and every child proxy orthogonal to them and to its siblings' directions
    child = np.zeros((NUM_CLASSES, 5))
    child[:, 1] = 1.0
    _set_proxies(loss, child, np.tile(eye[0], (5, 1)))
    terms = loss.terms(z, y)
    assert terms["child_to_parent"].item() == pytest.approx(1.0)  # 1 − cos 0
    assert terms["parent_sep"].item() == pytest.approx(1.0)  # relu(1 − 0)
    # prediction logits: the cosine similarities, no temperature
    torch.testing.assert_close(loss.logits(z), z @ torch.nn.functional.normalize(loss.child, dim=1).T)


def test_masking_augmentation():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(4000, 10)
    out = mask_augment(x, fraction=0.7, noise_std=0.0, generator=g)
    zeros = (out == 0).sum(1)
    assert int(zeros.min()) == 1 and int(zeros.max()) == 7  # k uniform in 1 … ⌊10·0.7⌋
    assert np.bincount(zeros.numpy(), minlength=8)[1:].min() > 400  # each k about 1/7 of the rows
    assert torch.equal(out[out != 0], x[out != 0])  # the other coordinates untouched (no noise)
    # every coordinate is masked about equally often
    per_coord = (out == 0).float().mean(0)
    assert float(per_coord.max() - per_coord.min()) < 0.06
    noisy = mask_augment(x, 0.7, 1e-4, torch.Generator().manual_seed(1))
    kept = noisy != 0
    assert 0 < float((noisy[kept] - 1).abs().max()) < 1e-3
    assert ((mask_augment(torch.ones(50, 3), 0.1, 0.0, g) == 0).sum(1) == 1).all()  # at least one coordinate


def _task(n, dim, seed, signal=True):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    dirs = torch.randn(NUM_CLASSES, dim, generator=torch.Generator().manual_seed(99))
    x = torch.randn(n, dim, generator=g) + (3 * dirs[y] if signal else 0)
    return x, y


def test_training_loop_schedule_and_early_stopping():
    cfg = BaselineTrain(
        hidden=16, epochs=40, batch_size=32, patience=3, lr_step_epochs=2, device="cpu", threads=1
    )
    xa, y = _task(160, 12, 0)
    va, vy = _task(60, 12, 1, signal=False)  # unlearnable validation labels: stops early
    res = train_baseline(cfg, [xa], y, [va], vy, seed=3)
    h = res.history
    assert len(h) == res.best_epoch + 1 + cfg.patience < cfg.epochs
    best = max(r["val_accuracy"] for r in h)
    assert res.best_val_accuracy == best == h[res.best_epoch]["val_accuracy"]
    assert all(r["val_accuracy"] < best for r in h[res.best_epoch + 1 :])
    # the returned weights are the best epoch's
    acc = float((baseline_logits(res.net, res.loss, [va]).argmax(1) == vy).float().mean())
    assert acc == pytest.approx(best)
    # the same seed gives the same run
    again = train_baseline(cfg, [xa], y, [va], vy, seed=3)
    assert [r["loss"] for r in again.history] == [r["loss"] for r in h]
    # StepLR: halved every 2 epochs; all epochs run when patience is not reached
    long = train_baseline(dataclasses.replace(cfg, epochs=6, patience=100), [xa], y, [va], vy, seed=3)
    assert [r["lr"] for r in long.history] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_baseline(cfg, [xa[:10]], y[:10], [va], vy)


def test_baseline_learns_and_runs_on_two_modalities(tmp_path):
    n_per_class, dim = 10, 32
    labels = np.repeat(np.arange(NUM_CLASSES), n_per_class)
    ids = [str(300000 + i) for i in range(len(labels))]
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(NUM_CLASSES, dim))
    audio = (rng.normal(size=(len(ids), dim)) + 3 * dirs[labels]).astype(np.float32)
    text = (rng.normal(size=(len(ids), dim)) + 3 * dirs[labels][:, ::-1]).astype(np.float32)
    root = tmp_path / "ds"
    write_metadata(
        root,
        [
            labelled_row(i, CLASSES[y], confidence="5", uploader="u", tags="t", description="")
            for i, y in zip(ids, labels, strict=True)
        ],
        "SYN",
        LABELLED_COLUMNS,
    )
    store = Store(default_store_path(root))
    status = np.full(len(ids), OK, np.uint8)
    status[-1] = 2  # one clip without features: left out, as the baseline does
    rows = store.create_rows(
        "embeddings/shipped@none",
        ids,
        {"audio": ((dim,), "float32"), "text": ((dim,), "float32")},
        chunk_rows=len(ids),
        attrs={},
        overwrite=True,
    )
    rows.write_chunk(0, {"audio": audio, "text": text}, status, [""] * len(ids))
    rows.finalize()
    cfg = BaselineConfig(
        dataset=str(root),
        folds=[0],
        out=str(tmp_path / "out"),
        train=BaselineTrain(hidden=64, epochs=20, batch_size=16, device="cpu", threads=1),
    )
    res = run_baseline(cfg, log=lambda *_: None)
    assert res["summary"]["hF"][0] > 0.5  # learns from the two modalities
    out = json.loads((tmp_path / "out" / "baseline.json").read_text())
    assert out["modalities"] == ["embeddings/shipped@none:audio", "embeddings/shipped@none:text"]
    split = json.loads((tmp_path / "out" / "fold0" / "split.json").read_text())
    assert ids[-1] not in split["train"] + split["val"] + split["test"]
    m = json.loads((tmp_path / "out" / "fold0" / "metrics.json").read_text())
    assert m["test"]["never_predicted"] == "drop" and "test_zero" in m
