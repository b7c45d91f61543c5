"""The typed config: defaults < TOML < --set < options; clear errors naming the field and file."""
from __future__ import annotations

import pytest

from extract.llm.cli import build_parser, main, resolve_config
from extract.llm.config import ConfigError, LLMConfig, load_config
from extract.llm.providers import available_providers


def test_precedence_defaults_toml_set_options(tmp_path):
    toml = tmp_path / "llm.toml"
    toml.write_text('[llm]\nprovider = "openai"\nmodel = "m1"\nconcurrency = 4\nknn_k = 7\ntemperature = 0.3\n')
    args = build_parser().parse_args(["priors", "--dataset", "d", "--config", str(toml), "--set", "model=m2",
                                      "--set", "knn-k=9", "--concurrency", "2", "--set", "temperature=none"])
    cfg = resolve_config(args)
    assert (cfg.provider, cfg.model, cfg.concurrency, cfg.knn_k, cfg.kind) == ("openai", "m2", 2, 9, "priors")
    assert cfg.temperature is None and cfg.timeout == LLMConfig().timeout
    assert cfg.group() == "llm/priors/openai"


@pytest.mark.parametrize("text,needle", [
    ('concurrency = "many"\n', "field 'concurrency' expects int"),
    ('colour = "red"\n', "unknown config field(s) colour"),
    ("concurrency = \n", "invalid TOML"),
])
def test_bad_toml_names_file_and_field(tmp_path, text, needle):
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(toml)
    assert needle in str(e.value) and str(toml) in str(e.value)


def test_cli_errors(tmp_path, capsys):
    assert main(["priors", "--dataset", str(tmp_path / "none")]) == 1
    assert "dataset folder not found" in capsys.readouterr().err
    assert main(["priors", "--dataset", str(tmp_path), "--provider", "gpt"]) == 1
    assert "unknown LLM provider 'gpt'; available: embedded, embedded-knn, openai, openai-batch" in \
        capsys.readouterr().err
    assert main(["priors", "--dataset", str(tmp_path)]) == 1
    assert "no metadata/ folder" in capsys.readouterr().err
    assert main(["priors", "--dataset", str(tmp_path), "--set", "api=soap"]) == 1
    assert "api must be 'responses' or 'chat'" in capsys.readouterr().err
    assert main(["embeddings"]) == 2  # not an LLM command
    assert set(available_providers()) >= {"openai", "openai-batch", "embedded", "embedded-knn"}
