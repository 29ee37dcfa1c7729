"""An app served to others reads files only under its --data folders and loads only the models it
offers; unset (the command line, an app on loopback), everything is allowed."""

from __future__ import annotations

import pytest
from PIL import Image

from mmneurons.access import DATA_ROOTS_ENV, MODELS_ENV, check_model, check_readable, is_loopback
from mmneurons.errors import AccessError
from mmneurons.images import FolderSource, WordSource, load_image


@pytest.fixture
def served(tmp_path, monkeypatch):
    """An allowed data folder with an image and a word list, and files beside it that are not."""
    data, outside = tmp_path / "data", tmp_path / "private"
    (data / "cats").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(data / "cats" / "a.png")
    (data / "words.txt").write_text("star\nmoon\n")
    Image.new("RGB", (8, 8)).save(outside / "secret.png")
    (outside / "passwd").write_text("root:x:0:0\n")
    (data / "cats" / "link.png").symlink_to(outside / "secret.png")  # a way out, planted inside
    (data / "escape").symlink_to(outside, target_is_directory=True)
    monkeypatch.setenv(DATA_ROOTS_ENV, str(data))
    return data, outside


def test_unset_everything_is_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ROOTS_ENV, raising=False)
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert check_readable("/etc/hostname") == check_readable("/etc/hostname")
    assert check_model("openclip:RN50x4@openai") == "openclip:RN50x4@openai"


def test_paths_are_checked_after_dots_and_symlinks(served):
    data, outside = served
    assert check_readable(data / "words.txt") == data / "words.txt" and check_readable(data) == data
    for path in (outside / "passwd", data / ".." / "private" / "passwd", data / "cats" / "link.png",
                 data / "escape" / "passwd", "/etc/passwd"):
        with pytest.raises(AccessError, match="is outside the folders this app may read"):
            check_readable(path)


def test_the_loaders_read_only_inside(served):
    data, outside = served
    source = FolderSource(data)
    assert [source.record(i).id for i in range(len(source))] == ["cats/a.png", "words.txt"]  # no symlink out
    assert source.load(0).getpixel((0, 0)) == (1, 2, 3)
    assert WordSource.from_file(data / "words.txt").words == ["star", "moon"]
    for read in (lambda: FolderSource(outside), lambda: WordSource.from_file(outside / "passwd"),
                 lambda: WordSource.from_file("/etc/passwd"), lambda: load_image(outside / "secret.png")):
        with pytest.raises(AccessError):
            read()


def test_concept_files_of_neuron_label_are_checked_too(served):
    from mmneurons.plugins.probes.neuron_label import NeuronLabelProbe

    data, outside = served
    assert NeuronLabelProbe.concepts(f"@{data / 'words.txt'}") == ["star", "moon"]
    with pytest.raises(AccessError):
        NeuronLabelProbe.concepts(f"@{outside / 'passwd'}")


def test_models_outside_the_offer_are_refused(monkeypatch):
    monkeypatch.setenv(MODELS_ENV, "demo:shapes,openclip:RN50@random")
    assert check_model("demo:shapes") == "demo:shapes"
    with pytest.raises(AccessError, match="'openclip:RN50x4@openai' is not offered by this app; models: demo:shapes"):
        check_model("openclip:RN50x4@openai")


@pytest.mark.parametrize("host, loop", [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True),
                                        ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                        ("192.168.1.5", False), ("::", False), ("myhost", False)])
def test_loopback(host, loop):
    assert is_loopback(host) is loop
