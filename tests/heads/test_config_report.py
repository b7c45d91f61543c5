"""Typed configs (TOML + overrides), reports and submission files."""

import numpy as np
import pytest
import yaml

from cache.config import ConfigError, dump_toml, load_config, to_dict
from cache.metric import hierarchical_scores
from cache.taxonomy import CLASSES
from heads.pipeline_config import PipelineConfig
from heads.report import confusion_matrix, plot_curves, write_classification_report
from heads.score import read_predictions
from heads.submission import write_meta_yaml, write_output_csv
from heads.training import TrainConfig


def test_load_config_toml_overrides_and_errors(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(
        'name = "x"\n[data.clean]\nroot = "/d"\n[stage1]\nk = 4\n[[models]]\nname = "a"\n'
        'groups = ["embeddings/logmel@none"]\npreset = "no-prior"\n'
    )
    cfg = load_config(PipelineConfig, f, ["stage1.k=6", "train.lr=0.002", "models.0.hidden=32", 'out="/o"'])
    assert cfg.stage1.k == 6 and cfg.train.lr == 0.002 and cfg.models[0].hidden == 32 and cfg.out == "/o"
    assert cfg.stage2.lam_min == 0.75 and cfg.stage2.decay_start_epoch == 2.0  # recipe defaults kept
    cfg.validate()
    # the resolved config round-trips through TOML
    g = tmp_path / "resolved.toml"
    g.write_text(dump_toml(to_dict(cfg)))
    assert to_dict(load_config(PipelineConfig, g)) == to_dict(cfg)
    f.write_text("[stage1]\nkk = 4\n")
    with pytest.raises(ConfigError, match="kk"):
        load_config(PipelineConfig, f)
    with pytest.raises(ConfigError, match="epochs"):
        load_config(TrainConfig, None, ['epochs="many"'])


def test_confusion_matrix_and_report_files(tmp_path):
    y = np.array([0, 0, 1, 15])
    p = np.array([0, 1, 1, 15])
    cm = confusion_matrix(y, p)
    assert cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 1 and cm[15, 15] == 1 and cm.sum() == 4
    paths = write_classification_report(tmp_path, "r", y, p, hierarchical_scores(y, p), "t")
    md = paths["markdown"].read_text()
    assert "never-predicted convention: 'zero'" in md and "| m-sp |" in md
    assert paths["confusion_png"].stat().st_size > 1000
    png = plot_curves(
        {
            "a": [
                {"epoch": 0, "train_loss": 1.0, "val_hF": 0.5},
                {"epoch": 1, "train_loss": 0.5, "val_hF": 0.6},
            ]
        },
        tmp_path / "c.png",
    )
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_submission_files(tmp_path):
    ids = ["a", "b", "c"]
    path = write_output_csv(tmp_path / "L.output.csv", ids, np.array([0, 22, 15]), np.array([0.5, 1.0, 0.25]))
    back = read_predictions(path)
    assert back.ids == ids and [CLASSES[c] for c in back.labels] == ["m-sp", "ss-s", "fx-a"]
    assert back.scores.tolist() == [0.5, 1.0, 0.25]
    assert path.read_text().splitlines()[0] == "id,predicted_bst_second_level_class,prediction_score"
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_output_csv(tmp_path / "bad.csv", ids, np.array([0, 1, 2]), np.array([0.5, 1.5, 0.1]))
    sc = hierarchical_scores(["m-sp", "m-si", "m-si", "fx-a"], ["m-sp", "m-m", "m-si", "fx-a"])
    meta = write_meta_yaml(
        tmp_path / "L.meta.yaml",
        label="L",
        name="n",
        abbreviation="a",
        description="d",
        dev_scores=sc,
        dev_split="fold 0",
        n_parameters=1234,
        parameters_count="heads only",
    )
    m = yaml.safe_load(meta.read_text())
    dev = m["results"]["development_datasets"]["bsd10k-v1.2"]
    assert dev["overall"] == {"hP": 1.0, "hR": 0.8958, "hF": 0.9383}
    assert dev["class_wise"]["m-si"]["hR"] == 0.6875
    assert "'zero'" in dev["metric"]
    assert m["system"]["complexity"]["total_parameters"] == 1234
