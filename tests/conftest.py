"""Shared fixtures: tiny models built once per session, a clean plugin registry per test."""

from __future__ import annotations

import copy
import os
import shutil

# Installed third-party plugins stay out of the test run, and nothing is ever downloaded.
os.environ["MMNEURONS_LOAD_ENTRYPOINTS"] = "0"
os.environ["MMNEURONS_OFFLINE"] = "1"
# The app's pages compute, and build no atlas on first start, unless a test gives them an atlas.
os.environ["MMNEURONS_ATLAS"] = "none"

import pytest  # noqa: E402
import torch  # noqa: E402

from mmneurons.registry import PluginRegistry, reset_registry  # noqa: E402
from mmneurons.testing import tiny_clip  # noqa: E402

from .helpers import png_bytes, write_shard  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """What mmneurons caches for itself (the app's first view) goes to a folder of the test session,
    never to the user's ~/.cache (servers the tests start inherit it)."""
    os.environ["MMNEURONS_CACHE_DIR"] = str(tmp_path_factory.mktemp("mmneurons-cache"))


@pytest.fixture(scope="session")
def tiny_resnet():
    return tiny_clip("resnet")


@pytest.fixture(scope="session")
def tiny_vit():
    return tiny_clip("vit")


@pytest.fixture(scope="session")
def demo_model():
    """The embedded, trained demo model: activations with the spread of a real model's."""
    from mmneurons.plugins.demo.plugin import DemoProvider

    return DemoProvider().load("shapes", "cpu")


@pytest.fixture(scope="session")
def bn_resnet(tiny_resnet):
    """The tiny ResNet with BatchNorms that do something (random statistics and affine terms):
    at initialization they are identities, and folding them would prove nothing."""
    visual = copy.deepcopy(tiny_resnet.visual)
    gen = torch.Generator().manual_seed(0)
    for m in visual.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.2)
            m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return tiny_resnet.with_visual(visual)


@pytest.fixture(params=["resnet", "vit"])
def tiny_model(request, tiny_resnet, tiny_vit):
    """Each test using this runs on both towers, so nothing is ResNet-only by accident."""
    return tiny_resnet if request.param == "resnet" else tiny_vit


@pytest.fixture
def registry():
    """A fresh registry with only the built-ins, installed as the process-wide one for the test."""
    reg = PluginRegistry(entry_points=False, env={})
    reset_registry(reg)
    yield reg
    reset_registry(None)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_resnet):
    """The tiny ResNet CLIP saved as a self-describing checkpoint (``openclip:/path``)."""
    from mmneurons.plugins.openclip_models import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(tiny_resnet.model, path, model_cfg=tiny_resnet.meta["config"],
                    preprocess={"size": 64, "mean": list(tiny_resnet.mean), "std": list(tiny_resnet.std)})
    return path


@pytest.fixture(scope="session")
def random_images():
    """40 deterministic random RGB images of varied sizes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for i in range(40):
        h, w = 48 + (i % 5) * 8, 64 + (i % 3) * 16
        base = rng.random(3) * 255
        noise = rng.normal(0, 40 + 5 * (i % 7), size=(h, w, 3))
        images.append(Image.fromarray(np.clip(base + noise, 0, 255).astype("uint8")))
    return images


def chromium_path() -> str:
    path = os.environ.get("MMNEURONS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("the browser tests need Chromium: `apt-get install chromium` (Debian) or set MMNEURONS_CHROMIUM "
                    "to a Chromium or Chrome binary; the README's test command installs it")
    return path


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, driven by Playwright), for the app and the static export (one
    per module: Playwright's event loop stays out of the other tests)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def webdataset_shards(tmp_path_factory, random_images):
    """The 40 random images as two WebDataset shards of 20 (``cls`` = i % 3, caption ``txt``), and
    the same images as a folder, in the same order."""
    folder = tmp_path_factory.mktemp("wds")
    shards, same = folder / "shards", folder / "images"
    shards.mkdir()
    same.mkdir()
    for shard in range(2):
        samples = []
        for i in range(shard * 20, shard * 20 + 20):
            samples.append((f"sample{i:04d}", {"png": png_bytes(random_images[i]), "cls": str(i % 3),
                                               "txt": f"random image {i}"}))
            random_images[i].save(same / f"{i:04d}.png")
        write_shard(shards / f"shard-{shard:05d}.tar", samples)
    return shards, same


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray with two logical CPUs, started once for the tests that need it (start-up
    costs seconds) and stopped at the end of the session."""
    ray = pytest.importorskip("ray", reason="the test extra installs Ray")
    if ray.is_initialized():  # one a command under test started with other resources
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield ray
    if ray.is_initialized():
        ray.shutdown()
