"""Test helpers: install a fixture plugin package the way pip would, without a network."""

from __future__ import annotations

import importlib
import shutil
import sys
import tomllib
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def install_fixture_package(name: str, target: Path) -> Path:
    """Copy ``tests/fixtures/<name>`` into ``target`` with a ``.dist-info`` holding the entry points
    declared in its pyproject.toml, so ``importlib.metadata`` discovers it as an installed
    distribution once ``target`` is on ``sys.path``. Returns ``target``."""
    src = FIXTURES / name
    meta = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    shutil.copytree(src / name, target / name)
    dist_info = target / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = []
    for group, eps in meta.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    importlib.invalidate_caches()
    return target


def forget_modules(prefix: str) -> None:
    for mod in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[mod]


def write_random_images(folder: Path, n: int, size: tuple[int, int] = (32, 32), seed: int = 0) -> Path:
    """``n`` random RGB PNGs ``0.png ...`` in ``folder`` (made if missing): a user's image folder."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def write_shard(path, samples) -> None:
    """A WebDataset tar shard of ``samples``: ``(key, {ext: bytes | str})``."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for ext, data in members.items():
                data = data.encode() if isinstance(data, str) else data
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def png_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
