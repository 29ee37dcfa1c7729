"""The Ray engine on a real local Ray: the same numbers as the local engine (ResNet and ViT,
folder and WebDataset sources), also when a model actor is killed mid-scan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mmneurons.activations import scan_layers_top_k
from mmneurons.dataset_sources import WebDatasetSource
from mmneurons.images import FolderSource
from mmneurons.ray_engine import pool_plan
from mmneurons.engines import run_scan
from mmneurons.scan import ScanOptions, ScanRequest

ray = pytest.importorskip("ray", reason="the test extra installs Ray; without it the Ray engine is not testable")

pytestmark = pytest.mark.slow


@pytest.fixture
def local_ray(ray_session):
    return ray_session


def _same(a, b) -> None:
    for layer in a:
        for field in ("top_values", "top_indices", "bottom_values", "bottom_indices"):
            x, y = getattr(a[layer], field), getattr(b[layer], field)
            assert (x is None and y is None) or np.array_equal(x, y), f"{layer} {field} differs"
        assert a[layer].n_images == b[layer].n_images and a[layer].skipped == b[layer].skipped
        assert a[layer].precision == b[layer].precision


def test_ray_equals_local_on_a_resnet_over_a_folder(local_ray, tiny_resnet, webdataset_shards, tmp_path):
    """Top-k, bottom-k, per-image rows and embeddings in one request."""
    _, folder = webdataset_shards
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted(folder.iterdir())[:22]:
        (images / path.name).write_bytes(path.read_bytes())
    (images / "0005.png").write_bytes(b"broken")
    source = FolderSource(images)
    request = ScanRequest(("layer2", "layer3"), k=4, bottom=True, rows=True, embeddings=True)
    local = run_scan(tiny_resnet, source, request, ScanOptions(batch_size=4))
    far = run_scan(tiny_resnet, source, request, ScanOptions(batch_size=4, engine="ray", ray_actors=1))
    for layer in request.layers:
        for side in ("top", "bottom"):
            for what in ("values", "indices"):
                name = f"{side}_{what}"
                assert torch.equal(getattr(local.topk[layer], name), getattr(far.topk[layer], name)), (layer, name)
        assert np.array_equal(local.layer_rows(layer), far.layer_rows(layer))
    # the embedding's matrix products sum in an order that follows the thread count, which an actor
    # and this process need not share: equal to float32 rounding, where the convolutions are exact
    assert np.allclose(local.embedding_rows(), far.embedding_rows(), rtol=1e-5, atol=1e-6)
    assert far.sorted_skipped() == local.sorted_skipped() and far.sorted_skipped()[0][0] == 5
    assert far.loaded == 21 and far.batches == set(range(6)) and far.precision == local.precision == "fp32"


def _actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"_ScanActor" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_ray_equals_local_on_a_vit_over_webdataset_shards_with_an_actor_killed(local_ray, tiny_vit,
                                                                                 webdataset_shards):
    shards, _ = webdataset_shards
    source = WebDatasetSource(shards)
    layers = ["transformer.resblocks.0", "transformer.resblocks.1"]
    local = scan_layers_top_k(tiny_vit, source, layers, 3, bottom=True, options=ScanOptions(batch_size=4))
    killed: list[int] = []

    def kill_the_first_actor() -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            pids = _actor_pids()
            if pids:
                time.sleep(0.5)  # let it start on its block
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_first_actor, daemon=True)
    killer.start()
    far = scan_layers_top_k(tiny_vit, source, layers, 3, bottom=True,
                            options=ScanOptions(batch_size=4, engine="ray", ray_actors=1))
    killer.join()
    assert killed, "no actor process was found to kill"
    _same(local, far)
    assert far[layers[0]].categories == local[layers[0]].categories


def test_the_pool_plan_leaves_a_cpu_to_decoding_uses_the_cores_and_takes_gpus():
    assert pool_plan({"CPU": 2.0}, 2) == {"actors": 2, "num_gpus": 0.0, "num_cpus": 0.5, "device": "cpu", "threads": 1}
    assert pool_plan({"CPU": 2.0}, 1) == {"actors": 1, "num_gpus": 0.0, "num_cpus": 1.0, "device": "cpu", "threads": 2}
    assert pool_plan({"CPU": 64.0})["actors"] == 16 and pool_plan({"CPU": 64.0})["threads"] == 4
    assert pool_plan({"CPU": 32.0, "GPU": 4.0}) == {"actors": 4, "num_gpus": 1.0, "num_cpus": 1.0, "device": "cuda",
                                                    "threads": 1}


def test_without_ray_the_engine_says_how_to_get_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from mmneurons.ray_engine import connect\n"
            "try:\n    connect()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("EngineError --engine ray needs Ray Data") and "mmneurons[ray]" in out


def test_an_atlas_examples_stage_built_on_ray_equals_the_local_one(local_ray, tiny_resnet, tmp_path):
    from dataclasses import replace

    from mmneurons.atlas import build_atlas

    from .atlas.build_worker import options, source
    from .atlas.conftest import assert_same_atlas

    images = source()
    local = replace(options(), stages=["examples"])
    far = replace(local, scan=ScanOptions(batch_size=local.batch_size, num_workers=0, engine="ray", ray_actors=1))
    build_atlas(tiny_resnet, tmp_path / "local", images, images.describe(), local)
    build_atlas(tiny_resnet, tmp_path / "ray", images, images.describe(), far)
    assert_same_atlas(tmp_path / "ray", tmp_path / "local")
