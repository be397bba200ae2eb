"""The README's Python example runs, on a small GroupLens-format stand-in for ml-100k."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from recfunnel.data.datasets import fetch

README = Path(__file__).resolve().parents[1] / "README.md"
GENRES = "|".join(["0"] * 19)


def _fake_ml100k(directory: Path) -> Path:
    rng = np.random.default_rng(0)
    users = [str(u) for u in range(180, 260)]  # includes "196", the README's user
    lines = []
    for n, u in enumerate(users):
        for i in rng.choice(60, size=12, replace=False):
            lines.append(f"{u}\t{i + 1}\t{rng.integers(1, 6)}\t{881250949 + n}")
    directory.mkdir()
    (directory / "u.data").write_text("\n".join(lines) + "\n")
    (directory / "u.item").write_text(
        "".join(f"{i}|Movie {i} (1995)|01-Jan-1995||x|{GENRES}\n" for i in range(1, 61)),
        encoding="latin-1",
    )
    (directory / "u.user").write_text("".join(f"{u}|30|M|other|00000\n" for u in users))
    return directory


def test_readme_python_example_runs(tmp_path: Path) -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no python example"
    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the stand-in is smaller than ml-100k
        fetch("ml-100k", source=_fake_ml100k(tmp_path / "ml-100k"), cache_dir=cache)
    code = block.group(1).replace(
        'Path("~/.cache/recfunnel").expanduser()', f"Path({str(cache)!r})"
    )
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)
    result = namespace["result"]
    assert 0.0 <= result.mean()["ndcg@10"] <= 1.0  # type: ignore[attr-defined]
