"""Funnel configuration: the shipped file parses, every error names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.pipeline.funnel_config import FunnelConfig, load_funnel_config

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "funnel.toml"

MINIMAL = """
[funnel]
n = 5
[[retrieval.generators]]
model = "pop"
quota = 20
[light]
model = "lightgbm"
keep = 10
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "f.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_shipped_config_parses_with_every_stage() -> None:
    cfg = load_funnel_config(SHIPPED)
    assert cfg.n == 10
    assert [(g.name, g.quota) for g in cfg.retrieval] == [
        ("ease", 200),
        ("als", 100),
        ("itemknn", 50),
        ("pop", 30),
    ]
    assert cfg.k1 == 380
    assert cfg.light is not None and cfg.heavy is not None
    assert cfg.heavy.keep <= cfg.light.keep <= cfg.k1
    assert [s.name for s in cfg.rerank] == ["seen", "blocked", "expired"]
    assert 0 < cfg.training.label_fraction < 1
    assert cfg.source == str(SHIPPED)


def test_round_trip_through_plain_data() -> None:
    cfg = load_funnel_config(SHIPPED)
    again = FunnelConfig.from_dict(cfg.to_dict(), source=cfg.source)
    assert again == cfg


def test_defaults_fill_what_is_absent(tmp_path: Path) -> None:
    cfg = load_funnel_config(_write(tmp_path, MINIMAL))
    assert cfg.n == 5 and cfg.heavy is None and cfg.rerank == ()
    assert [s.kind for s in cfg.features] == ["retrieval", "retrieval"]
    assert cfg.training.negative_keep_rate == 1.0 and cfg.fallback.popular_top == 200


@pytest.mark.parametrize(
    ("text", "key", "what"),
    [
        (MINIMAL.replace("quota = 20", 'quota = "twenty"'), "retrieval.generators[0].quota",
         "expected an integer"),
        (MINIMAL.replace("quota = 20", "quota = 0"), "retrieval.generators[0].quota", ">= 1"),
        (MINIMAL.replace("quota = 20", "qouta = 20"), "retrieval.generators[0]",
         "unknown key 'qouta'"),
        (MINIMAL.replace("n = 5", "n = 5\nsize = 3"), "funnel", "unknown key 'size'"),
        (MINIMAL.replace('model = "pop"\n', ""), "retrieval.generators[0].model", "missing"),
        (MINIMAL + "[heavy]\nmodel = 'dcn'\nkeep = 11\n", "heavy.keep", "keep must shrink"),
        (MINIMAL + "[training]\nlabel_order = 'first'\n", "training.label_order",
         "random, last"),
        (MINIMAL + "[training]\nnegative_keep_rate = 0.0\n", "training.negative_keep_rate",
         "(0, 1]"),
        (MINIMAL + "[training]\nrefit_retrieval = 'yes'\n", "training.refit_retrieval",
         "true or false"),
        ("[funnel]\nn = 3\n", "retrieval.generators", "missing"),
        (MINIMAL + "[[rerank.steps]]\nname = 'fallback'\n", "rerank.steps", "[fallback]"),
        (MINIMAL + "[fallback]\neditorial = 'a'\n", "fallback.editorial", "array of strings"),
    ],
)  # fmt: skip
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str, what: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_funnel_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: {key}"), msg
    assert what in msg


def test_duplicate_generator_names(tmp_path: Path) -> None:
    text = MINIMAL + '[[retrieval.generators]]\nmodel = "pop"\nquota = 3\n'
    with pytest.raises(ConfigError, match=r"retrieval.generators: generator names must be unique"):
        load_funnel_config(_write(tmp_path, text))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_funnel_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"f\.toml: not valid TOML"):
        load_funnel_config(_write(tmp_path, "[funnel\nn = 1"))


def test_unknown_models_are_located_when_the_funnel_is_built(tmp_path: Path) -> None:
    from recfunnel.core.matrix import InteractionMatrix
    from recfunnel.pipeline.funnel import Funnel

    m = InteractionMatrix.from_arrays(list("aabb"), list("xyxz"))
    cfg = load_funnel_config(_write(tmp_path, MINIMAL.replace('"pop"', '"poop"')))
    with pytest.raises(ConfigError, match=r"f\.toml: retrieval\.generators\[0\]: unknown model"):
        Funnel(cfg).fit(m)
    bad = MINIMAL.replace("quota = 20", "quota = 20\nparams = { alpha = 1 }")
    with pytest.raises(ConfigError, match=r"retrieval\.generators\[0\]: Popularity has no"):
        Funnel(load_funnel_config(_write(tmp_path, bad))).fit(m)
