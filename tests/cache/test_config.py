"""The shared typed-config machinery (cache.config), through its public functions."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cache.config import (
    ConfigError,
    apply_overrides,
    convert,
    dump_toml,
    from_dict,
    load_config,
    parse_value,
    read_toml,
    split_override,
    to_dict,
)


@dataclass
class Inner:
    k: int = 20
    lr: float = 1e-3
    name: str = "inner"


@dataclass
class Model:
    name: str = ""
    groups: list[str] = field(default_factory=list)
    hidden: int | None = None


@dataclass
class Outer:
    title: str = "run"
    out: Path = Path("runs/x")
    flag: bool = True
    seed: int | None = None
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[int, str] = (0, "a")
    extra: dict[str, Any] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    stage1: Inner = field(default_factory=Inner)
    stage2: Inner = field(default_factory=lambda: Inner(k=5, name="second"))
    models: list[Model] = field(default_factory=list)


def _rich() -> Outer:
    return Outer(
        title='a "quoted" title\twith tab',
        out=Path("/data/out dir"),
        flag=False,
        seed=7,
        sizes=(3, 4, 5),
        pair=(9, "z"),
        extra={"window seconds": 1.5, "nested": {"n": [1, 2]}, "on": True},
        scales={"a": 0.5, "b": math.inf},
        stage1=Inner(k=8, lr=3e-6, name="ü"),
        models=[Model("m1", ["embeddings/a@*", "embeddings/b"], 32), Model("m2")],
    )


def test_round_trip_dataclass_dict_toml_dataclass():
    cfg = _rich()
    d = to_dict(cfg)
    assert d["out"] == "/data/out dir" and d["sizes"] == [3, 4, 5] and d["models"][0]["hidden"] == 32
    text = dump_toml(d)
    parsed = tomllib.loads(text)
    assert parsed["stage1"] == {"k": 8, "lr": 3e-6, "name": "ü"}
    assert "hidden" not in parsed["models"][1]  # None is left out (TOML has no null) ...
    back = from_dict(Outer, parsed)
    assert back == cfg  # ... and comes back as the default
    assert isinstance(back.out, Path) and isinstance(back.sizes, tuple) and isinstance(back.stage1.lr, float)
    assert dump_toml(to_dict(back)) == text


def test_load_config_file_defaults_and_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('title = "t"\n[stage1]\nk = 4\n[[models]]\nname = "a"\ngroups = ["g1"]\n')
    cfg = load_config(
        Outer,
        f,
        [
            "stage1.k=3",
            "stage2.lr=0.5",
            "models.0.hidden=16",
            "title=hello world",
            "sizes=[7, 8]",
            "models.0.groups=g2",
            "extra.x={a = 1}",
            "out=/o",
        ],
    )
    assert cfg.stage1 == Inner(k=3) and cfg.stage2 == Inner(k=5, lr=0.5, name="second")  # defaults kept
    assert cfg.title == "hello world"  # not a TOML literal: the plain string
    assert cfg.sizes == (7, 8) and cfg.models == [Model("a", ["g2"], 16)]  # one string = one-item list
    assert cfg.extra == {"x": {"a": 1}} and cfg.out == Path("/o")
    assert load_config(Outer) == Outer()
    assert load_config(Inner, None, ["k=2.0", "lr=1", "name=5"]) == Inner(k=2, lr=1.0, name="5")


def test_parse_value_and_split_override():
    assert parse_value("3") == 3 and parse_value("1e-5") == 1e-5 and parse_value("true") is True
    assert parse_value('["a", "b"]') == ["a", "b"] and parse_value("{k = 1}") == {"k": 1}
    assert (
        parse_value("/data/x") == "/data/x"
        and parse_value("") == ""
        and parse_value("1\nw = 2") == "1\nw = 2"
    )
    assert split_override(" a.b = 3 ") == ("a.b", "3") and split_override("x==y") == ("x", "=y")
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE, got 'novalue'"):
        split_override("novalue", "--set")
    with pytest.raises(ConfigError, match="override expects KEY=VALUE"):
        apply_overrides({}, ["=3"])
    with pytest.raises(ConfigError, match="models.5.k"):
        apply_overrides({"models": []}, ["models.5.k=1"])
    with pytest.raises(ConfigError, match="title.x"):
        apply_overrides({"title": "t"}, ["title.x=1"])
    data = {"a": {"b": 1}, "l": [{"k": 1}]}
    assert apply_overrides(data, ["a.b=3", "a.c=x", "l.0.k=[1, 2]"]) == {
        "a": {"b": 3, "c": "x"},
        "l": [{"k": [1, 2]}],
    }
    assert data == {"a": {"b": 1}, "l": [{"k": 1}]}  # the input is not changed


@pytest.mark.parametrize(
    "override, needle",
    [
        ('stage1.k="many"', "stage1.k: expected an integer, got 'many'"),
        ("stage1.k=2.5", "stage1.k: expected an integer, got 2.5"),
        ("stage2.lr=fast", "stage2.lr: expected a number, got 'fast'"),
        ("flag=1", "flag: expected true or false, got 1"),
        ("title=true", "title: expected a string, got True"),
        ("models=[{hidden = 1.5}]", r"models\[0\].hidden: expected an integer"),
        ('sizes=[1, "x"]', r"sizes\[1\]: expected an integer"),
        ("pair=[1]", "pair: expected 2 items"),
        ("extra=3", "extra: expected a table"),
        ('scales={a = "big"}', "scales.a: expected a number"),
        ("stage1=4", "stage1: expected a table, got 4"),
        ("out=3", "out: expected a path"),
    ],
)
def test_type_errors_name_the_key(tmp_path, override, needle):
    f = tmp_path / "c.toml"
    f.write_text("[stage1]\nk = 1\n")
    with pytest.raises(ConfigError, match=needle) as e:
        load_config(Outer, f, [override])
    assert str(e.value).startswith(f"{f} (with overrides): ")


def test_convert_optional_union_and_none():
    assert convert(int | None, None, "x") is None and convert(int | None, 3, "x") == 3
    assert convert(int | str, "a", "x") == "a" and convert(int | str, 4, "x") == 4
    assert convert(Any, {"anything": [1]}, "x") == {"anything": [1]}
    with pytest.raises(ConfigError, match="f.toml: x: expected int, got None"):
        convert(int, None, "x", "f.toml")
    assert convert(int | str, 1.5, "x") == "1.5"  # the first arm that fits
    with pytest.raises(ConfigError, match="x: expected int or bool, got 'y'"):
        convert(int | bool, "y", "x")


def test_unknown_keys_are_named_with_the_known_ones(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[stage1]\nkk = 4\nlr = 0.1\nzz = 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(Outer, f)
    assert str(e.value) == f"{f}: unknown keys 'stage1.kk', 'stage1.zz'; known keys in stage1: k, lr, name"
    with pytest.raises(ConfigError, match="config: unknown key 'colour'; known keys: title, out, flag"):
        from_dict(Outer, {"colour": "red"})
    with pytest.raises(ConfigError, match=r"override: unknown key 'models\[1\].size'"):
        from_dict(Outer, {"models": [{}, {"size": 1}]}, "override")


def test_missing_file_and_bad_toml_name_the_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"config file not found: {missing}"):
        read_toml(missing)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path)  # a folder is not a config file
    bad = tmp_path / "bad.toml"
    bad.write_text("[stage1]\nk = \n")
    with pytest.raises(ConfigError) as e:
        load_config(Outer, bad)
    assert str(e.value).startswith(f"{bad}: invalid TOML: ")
    bad.write_bytes(b'title = "\xff"\n')
    with pytest.raises(ConfigError, match="invalid TOML"):
        read_toml(bad)


def test_dump_toml_layout():
    text = dump_toml(
        {
            "a": 1,
            "t": {"x": "s", "sub": {"y": [1.5, float("nan")]}},
            "arr": [{"k": 1}, {"k": 2}],
            "none": None,
            "mixed": [1, {"z": 2}],
            "we.ird": {"key with space": "\x7f"},
        }
    )
    assert text.splitlines()[:2] == ["a = 1", "mixed = [1, {z = 2}]"]
    assert "[t.sub]" in text and text.count("[[arr]]") == 2 and "none" not in text and '["we.ird"]' in text
    parsed = tomllib.loads(text)
    assert math.isnan(parsed["t"]["sub"]["y"][1]) and parsed["arr"] == [{"k": 1}, {"k": 2}]
    assert parsed["we.ird"] == {"key with space": "\x7f"}
    with pytest.raises(ConfigError, match=r"l\[1\]: TOML cannot hold None"):
        dump_toml({"l": [1, None]})
