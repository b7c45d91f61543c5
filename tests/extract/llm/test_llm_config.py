"""The typed config: defaults < TOML [llm] < --set llm.KEY=VALUE < options; clear errors, exit 2."""

from __future__ import annotations

import importlib.util

import pytest

from extract.llm.cli import build_parser, main, resolve_config
from extract.llm.config import ConfigError, LLMConfig, LLMRunConfig, load_config
from extract.llm.providers import available_providers


def test_precedence_defaults_toml_set_options(tmp_path):
    toml = tmp_path / "llm.toml"
    toml.write_text(
        '[llm]\nprovider = "openai"\nmodel = "m1"\nconcurrency = 4\nknn_k = 7\ntemperature = 0.3\n'
    )
    args = build_parser().parse_args(
        [
            "priors",
            "--dataset",
            "d",
            "--config",
            str(toml),
            "--set",
            "llm.model=m2",
            "--set",
            "llm.knn_k=9",
            "--concurrency",
            "2",
            "--set",
            "llm.concurrency=8",
            "--set",
            "llm.sampling=never",
            "--name",
            "true",
        ]
    )
    cfg = resolve_config(args)
    assert isinstance(cfg, LLMRunConfig)
    llm = cfg.llm
    assert (llm.provider, llm.model, llm.concurrency, llm.knn_k, llm.kind) == ("openai", "m2", 2, 9, "priors")
    assert llm.temperature == 0.3 and llm.sampling == "never" and llm.timeout == LLMConfig().timeout
    assert llm.name == "true" and llm.group() == "llm/priors/true"  # a shorthand's text stays a string
    saved = tmp_path / "resolved.toml"
    saved.write_text(cfg.to_toml())
    assert saved.read_text().startswith("[llm]\n") and load_config(saved) == cfg


@pytest.mark.parametrize(
    "text,needle",
    [
        ('[llm]\nconcurrency = "many"\n', "llm.concurrency: expected an integer, got 'many'"),
        ('[llm]\ncolour = "red"\n', "unknown key 'llm.colour'"),
        ('model = "m"\n', "key(s) 'model' belong in the [llm] section"),
        ("[llm]\nconcurrency = \n", "invalid TOML"),
    ],
)
def test_bad_toml_names_file_and_field(tmp_path, text, needle):
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(toml)
    assert needle in str(e.value) and str(toml) in str(e.value)


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    def err(argv):
        rc = main(argv)
        text = capsys.readouterr().err
        assert rc == 2 and text.startswith("error: ") and text.count("\n") == 1 and "Traceback" not in text, (
            text
        )
        return text

    assert "dataset folder not found" in err(["priors", "--dataset", str(tmp_path / "none")])
    assert "unknown LLM provider 'gpt'; available: embedded, embedded-knn, openai, openai-batch" in err(
        ["priors", "--dataset", str(tmp_path), "--provider", "gpt"]
    )
    assert "no metadata/ folder" in err(["priors", "--dataset", str(tmp_path)])
    assert "llm.api must be 'responses' or 'chat'" in err(
        ["priors", "--dataset", str(tmp_path), "--set", "llm.api=soap"]
    )
    assert "write --set llm.concurrency=..." in err(
        ["priors", "--dataset", str(tmp_path), "--set", "concurrency=3"]
    )
    assert "llm.concurrency: expected an integer" in err(
        ["priors", "--dataset", str(tmp_path), "--set", "llm.concurrency=many"]
    )
    assert main(["embeddings"]) == 2  # not an LLM command
    assert set(available_providers()) >= {"openai", "openai-batch", "embedded", "embedded-knn"}


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        main(["priors", "--dataset", str(tmp_path / "none"), "--debug"])


def test_one_entry_point():
    # `python -m extract priors|summaries` only
    assert importlib.util.find_spec("extract.llm.__main__") is None
