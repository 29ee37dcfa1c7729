"""ReLU gradient redirection: Lucid's rule per example, and the ReLUs always restored."""

from __future__ import annotations

import pytest
import torch


def _lucid_redirected_grad(x, grad):
    """Lucid's redirected_relu_grad, written out per example as a reference."""
    relu_grad = torch.where(x < 0, torch.zeros_like(grad), grad)
    redirected = torch.where((x < 0) & (grad > 0), torch.zeros_like(grad), grad)
    passes = relu_grad.flatten(1).norm(dim=1) > 0
    return torch.where(passes.view(-1, *[1] * (x.ndim - 1)), relu_grad, redirected)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_redirected_relu_matches_lucids_rule_per_example(inplace, channels_last):
    from mmneurons.plugins.lucent_vis.redirect import _RedirectedReLU

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 6, 4, 4, generator=gen)
    x[1] = -x[1].abs() - 0.1                     # example 1: inactive everywhere
    x[3, :, :2] = -1.0                           # example 3: inactive where its gradient arrives
    grad = torch.randn(5, 6, 4, 4, generator=gen)
    grad[3, :, 2:] = 0.0
    grad[4] = 0.0                                # example 4: no gradient at all
    if channels_last:
        x, grad = (t.contiguous(memory_format=torch.channels_last) for t in (x, grad))
    leaf = x.clone().requires_grad_(True)
    out = _RedirectedReLU.apply(leaf * 1 if inplace else leaf, inplace)
    assert torch.equal(out, x.clamp(min=0))
    out.backward(grad)
    expected = _lucid_redirected_grad(x, grad)
    assert torch.equal(leaf.grad, expected)
    assert torch.equal(leaf.grad[0], grad[0] * (x[0] > 0))           # plain ReLU rule where it passes
    assert (leaf.grad[1] == grad[1].clamp(max=0)).all() and leaf.grad[1].abs().sum() > 0  # dead: redirected


def test_redirected_relus_are_always_restored(demo):
    from mmneurons.plugins.lucent_vis.redirect import _redirected_relu, _RedirectedReLU, redirected_relus

    x = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    (-_RedirectedReLU.apply(x).sum()).backward()       # loss falls when x rises: let it through
    assert x.grad.tolist() == [[-1.0, -1.0]]
    relus = [m for m in demo.visual.modules() if isinstance(m, torch.nn.ReLU)]
    with pytest.raises(RuntimeError, match="inside"):
        with redirected_relus(demo, True):
            swapped = [vars(m).get("forward") for m in relus]
            assert all(f.func is _redirected_relu and f.keywords == {"inplace": m.inplace}
                       for f, m in zip(swapped, relus))
            raise RuntimeError("inside")
    assert all("forward" not in vars(m) for m in relus)
