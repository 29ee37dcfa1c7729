"""Truncated capture, hook cleanup, and the streaming top-k against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmneurons.activations import StreamingTopK, capture_layers, reduce_spatial, scan_top_k, unit_activations
from mmneurons.images import ListSource, to_pixels
from mmneurons.units import Unit


def _all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.visual.modules())


def test_layer3_capture_never_runs_layer4(tiny_resnet):
    calls = []
    handle = tiny_resnet.visual.layer4.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        acts = capture_layers(tiny_resnet, torch.rand(2, 3, 64, 64), ["layer3"])
        assert calls == []
        assert acts["layer3"].shape == (2, 256, 4, 4)
        capture_layers(tiny_resnet, torch.rand(2, 3, 64, 64), ["layer3", "layer4"])
        assert calls == [1]
    finally:
        handle.remove()


def test_vit_capture_stops_after_the_requested_block(tiny_vit):
    calls = []
    handle = tiny_vit.visual.transformer.resblocks[1].register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        capture_layers(tiny_vit, torch.rand(1, 3, 64, 64), ["transformer.resblocks.0"])
        assert calls == []
    finally:
        handle.remove()


def test_captured_values_match_a_full_forward(tiny_model):
    x = torch.rand(2, 3, 64, 64)
    name = tiny_model.layers()[-2].name
    truncated = capture_layers(tiny_model, x, [name])[name]
    full = capture_layers(tiny_model, x, [name], stop=False)[name]
    assert torch.equal(truncated, full)


def test_no_hook_remains_also_when_the_forward_raises(tiny_model, monkeypatch):
    before = _all_hooks(tiny_model)
    name = tiny_model.layers()[1].name
    capture_layers(tiny_model, torch.rand(1, 3, 64, 64), [name])
    assert _all_hooks(tiny_model) == before

    def broken(*args):
        raise RuntimeError("broken layer")

    monkeypatch.setattr(tiny_model, "to_grid", broken)
    with pytest.raises(RuntimeError, match="broken layer"):
        capture_layers(tiny_model, torch.rand(1, 3, 64, 64), [name])
    assert _all_hooks(tiny_model) == before
    with pytest.raises(Exception, match="no layer"):
        capture_layers(tiny_model, torch.rand(1, 3, 64, 64), [name, "nope"])
    assert _all_hooks(tiny_model) == before


def test_gradients_flow_through_a_truncated_capture(tiny_resnet):
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    value = unit_activations(tiny_resnet, x, [Unit("layer3", 5)])
    value.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_streaming_top_k_merges_batches():
    values = torch.randn(50, 6)
    topk = StreamingTopK(6, 4, bottom=True)
    for start in range(0, 50, 7):
        topk.update(values[start:start + 7], torch.arange(start, min(start + 7, 50)))
    ref_v, ref_i = torch.topk(values.T, 4, dim=1)
    assert torch.equal(topk.top_values, ref_v) and torch.equal(topk.top_indices, ref_i)
    ref_v, ref_i = torch.topk(values.T, 4, dim=1, largest=False)
    assert torch.equal(topk.bottom_values, ref_v) and torch.equal(topk.bottom_indices, ref_i)


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_scan_equals_all_activations_then_topk(tiny_model, random_images, reduce):
    source = ListSource(random_images)
    layer = tiny_model.layers()[-2].name
    result = scan_top_k(tiny_model, source, layer, k=5, reduce=reduce, bottom=True, batch_size=7, num_workers=0)
    pixels = torch.stack([to_pixels(im, 64) for im in random_images])
    with torch.no_grad():
        everything = reduce_spatial(capture_layers(tiny_model, pixels, [layer])[layer], reduce)
    for largest, values, indices in [(True, result.top_values, result.top_indices),
                                     (False, result.bottom_values, result.bottom_indices)]:
        ref_v, ref_i = torch.topk(everything.T, 5, dim=1, largest=largest)
        assert torch.allclose(torch.from_numpy(values), ref_v, atol=1e-5)
        # indices may differ only among tied values (dead channels): they must point at the same values
        picked = everything.T.gather(1, torch.from_numpy(indices))
        assert torch.allclose(picked, ref_v, atol=1e-5)
        untied = (ref_v[:, :-1] - ref_v[:, 1:]).abs().min(dim=1).values > 1e-6
        assert untied.sum() >= everything.shape[1] // 10  # the comparison is not vacuous
        assert torch.equal(torch.from_numpy(indices)[untied, 0], ref_i[untied, 0])
    assert result.n_images == 40 and result.top_values.shape == (everything.shape[1], 5)


def test_scan_reports_progress_and_warns_when_k_exceeds_the_images(tiny_resnet, random_images):
    calls = []
    result = scan_top_k(tiny_resnet, ListSource(random_images[:3]), "layer2", k=10,
                        progress=lambda d, t, m: calls.append((d, t)))
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)
    assert result.top_values.shape == (128, 3)
    assert "k=10 is larger than the 3 images" in result.warnings[0]


def test_scan_with_loader_workers_matches(tiny_resnet, random_images):
    source = ListSource(random_images)
    a = scan_top_k(tiny_resnet, source, "layer2", k=3, num_workers=0, batch_size=16)
    b = scan_top_k(tiny_resnet, source, "layer2", k=3, num_workers=2, batch_size=16)
    assert (a.top_indices == b.top_indices).all()


def test_an_interrupted_scan_resumes_to_the_same_result(tiny_resnet, random_images, tmp_path):
    source = ListSource(random_images)
    full = scan_top_k(tiny_resnet, source, "layer2", k=4, bottom=True, batch_size=4, num_workers=0)
    ckpt = tmp_path / "scan.partial.pt"

    def interrupt(done, total, message):
        if done >= 24:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan_top_k(tiny_resnet, source, "layer2", k=4, bottom=True, batch_size=4, num_workers=0,
                   progress=interrupt, checkpoint=ckpt, checkpoint_every=2)
    assert ckpt.exists()
    seen = []
    resumed = scan_top_k(tiny_resnet, source, "layer2", k=4, bottom=True, batch_size=4, num_workers=0,
                         progress=lambda d, t, m: seen.append(d), checkpoint=ckpt, checkpoint_every=2)
    assert seen[0] == 24  # started where the last checkpoint was, not at 0
    assert "resumed from" in resumed.warnings[0] and not ckpt.exists()
    assert (resumed.top_indices == full.top_indices).all() and (resumed.bottom_indices == full.bottom_indices).all()
    assert resumed.n_images == full.n_images == 40


def test_a_checkpoint_of_another_scan_is_ignored(tiny_resnet, random_images, tmp_path):
    ckpt = tmp_path / "scan.partial.pt"
    source = ListSource(random_images[:12])

    def interrupt(done, total, message):
        if done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan_top_k(tiny_resnet, source, "layer2", k=2, batch_size=4, num_workers=0, progress=interrupt,
                   checkpoint=ckpt, checkpoint_every=1)
    other = scan_top_k(tiny_resnet, source, "layer3", k=2, batch_size=4, num_workers=0, checkpoint=ckpt)
    assert other.layer == "layer3" and not any("resumed" in w for w in other.warnings) and other.n_images == 12


def test_layer_means_match_capture_and_embeddings_come_from_the_same_pass(tiny_resnet, random_images, monkeypatch):
    from mmneurons.activations import layer_means

    source = ListSource(random_images[:10] + ["/no/such.png"])
    pixels = torch.stack([to_pixels(im, 64) for im in random_images[:10]])
    with torch.no_grad():
        expected = reduce_spatial(capture_layers(tiny_resnet, pixels, ["layer3"])["layer3"], "mean").numpy()
        expected_emb = tiny_resnet.encode_image(pixels).numpy()
    from mmneurons.scan import ScanTower

    passes = []
    forward = ScanTower.forward
    monkeypatch.setattr(ScanTower, "forward", lambda self, *a, **k: passes.append(1) or forward(self, *a, **k))
    means = layer_means(tiny_resnet, source, "layer3", batch_size=4, num_workers=0, embeddings=True)
    assert len(passes) == 3  # one forward per batch of 4, not one for the layer and one for the embedding
    assert means.indices == list(range(10)) and means.skipped[0][0] == 10
    assert np.allclose(means.acts, expected, atol=1e-5) and np.allclose(means.embeddings, expected_emb, atol=1e-5)
    assert np.allclose(layer_means(tiny_resnet, source, "layer3", num_workers=0).acts, expected, atol=1e-5)


def test_one_threads_hooks_never_touch_another_threads_forward(tiny_resnet):
    """Two app sessions share one model: a truncated capture in one thread must not stop, or be
    filled by, a full forward pass in another (without the model's lock, most passes broke)."""
    import threading

    from mmneurons.activations import layer_gradient

    x = torch.rand(3, 3, 64, 64)
    with torch.inference_mode():
        ref_act = capture_layers(tiny_resnet, x, ["layer2"])["layer2"]
        ref_emb = tiny_resnet.encode_image(x)
    ref_grad = layer_gradient(tiny_resnet, x, "layer3", lambda e: e[:, 0])
    problems: list[str] = []

    def capture():
        for _ in range(60):
            with torch.inference_mode():
                if not torch.allclose(capture_layers(tiny_resnet, x, ["layer2"])["layer2"], ref_act, atol=1e-5):
                    problems.append("capture")

    def embed():
        for _ in range(60):
            try:
                with torch.inference_mode():
                    if not torch.allclose(tiny_resnet.encode_image(x), ref_emb, atol=1e-5):
                        problems.append("embedding")
            except BaseException as exc:  # noqa: BLE001 - a foreign hook's stop signal lands here
                problems.append(type(exc).__name__)

    def gradient():
        for _ in range(20):
            if not torch.allclose(layer_gradient(tiny_resnet, x, "layer3", lambda e: e[:, 0]), ref_grad, atol=1e-5):
                problems.append("gradient")

    threads = [threading.Thread(target=f) for f in (capture, embed, gradient)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    assert _all_hooks(tiny_resnet) == 0


class _Payload:
    """What a hostile checkpoint holds: unpickling it would run a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_planted_checkpoint_is_refused_and_never_run(tiny_resnet, random_images, tmp_path):
    import torch

    from mmneurons.errors import CheckpointError

    marker = tmp_path / "ran"
    ckpt = tmp_path / "scan.partial.pt"
    torch.save({"identity": {}, "topk": _Payload(marker)}, ckpt)
    with pytest.raises(CheckpointError, match="not a scan checkpoint that mmneurons can read safely"):
        scan_top_k(tiny_resnet, ListSource(random_images[:4]), "layer2", k=2, num_workers=0, checkpoint=ckpt)
    assert not marker.exists() and ckpt.exists()  # nothing ran, and the file is left where it was
    torch.save([1, 2, 3], ckpt)  # loads safely, but is not ours either
    with pytest.raises(CheckpointError, match="not a scan checkpoint of mmneurons"):
        scan_top_k(tiny_resnet, ListSource(random_images[:4]), "layer2", k=2, num_workers=0, checkpoint=ckpt)
