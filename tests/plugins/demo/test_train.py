"""Training is reproducible and an interrupted run resumes to the same weights."""

from __future__ import annotations

import json

import pytest

from mmneurons.plugins.demo.train import TrainConfig, train

SMALL = dict(images=256, steps=6, batch_size=32, checkpoint_every=2, warmup=2, threads=1)


def test_same_seed_same_weights_and_resume_after_interrupt(tmp_path):
    cfg = TrainConfig(seed=3, **SMALL)
    work = tmp_path / "work"
    first = json.loads(train(cfg, tmp_path / "a", log=lambda m: None, work=work).read_text())

    class Stop(Exception):
        pass

    def interrupt(step, total, message):
        if message.startswith("loss") and step == 3:
            raise Stop

    (work / "state-3.pt").unlink()
    with pytest.raises(Stop):
        train(cfg, tmp_path / "b", progress=interrupt, log=lambda m: None, work=work)
    assert (work / "state-3.pt").exists()  # the step-2 checkpoint survived the interruption
    messages = []
    second = json.loads(train(cfg, tmp_path / "b", log=messages.append, work=work).read_text())
    assert messages == ["resuming at step 2"]
    assert second["weights"]["sha256"] == first["weights"]["sha256"]
    other = json.loads(train(TrainConfig(seed=4, **SMALL), tmp_path / "c", log=lambda m: None,
                             work=tmp_path / "w2").read_text())
    assert other["weights"]["sha256"] != first["weights"]["sha256"]
