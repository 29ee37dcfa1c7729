"""The atlas on disk: schema versions and migrations, content-addressed files, canonical JSON."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from mmneurons.atlas import SCHEMA_VERSION, Atlas, AtlasError
from mmneurons.atlas import store
from mmneurons.cli import main


def version_1_atlas(folder):
    """An atlas as schema 1 wrote it (no search index): built by the shipped migration 1 alone."""
    folder.mkdir()
    conn = sqlite3.connect(folder / store.DB_NAME, isolation_level=None)
    store.MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO meta VALUES ('identity', ?)", (json.dumps({"model_id": "m", "weights": "w",
                                                                         "source": "s"}),))
    conn.execute("INSERT INTO layers VALUES ('layer4.0', 2, 1, 1)")
    conn.execute("INSERT INTO stages VALUES ('layer4.0', 'neuron_label', 'done', '{}', 'probes 0.1.0', 1, 1.0, '')")
    for c, label in enumerate(["spider", "yellow"]):
        conn.execute("INSERT INTO unit_values VALUES ('layer4.0', ?, 'neuron_label', ?)",
                     (c, json.dumps({"labels": {"label": label, "score": 0.5 + c}})))
    conn.execute("INSERT INTO unit_values VALUES ('layer4.0', 0, 'examples', ?)",
                 (json.dumps({"top": [{"image": "yellow/1", "category": "yellow"}]}),))
    conn.close()
    return folder


def test_an_older_atlas_is_read_after_an_upgrade_with_its_values_searchable(tmp_path):
    folder = version_1_atlas(tmp_path / "old")
    with pytest.raises(AtlasError, match="schema 1; run `mmneurons atlas upgrade"):
        Atlas.open(folder)
    result = CliRunner().invoke(main, ["atlas", "upgrade", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"schema 1 -> {SCHEMA_VERSION}" in result.output
    with Atlas.open(folder) as book:
        assert book.unit("layer4.0:1").values["neuron_label"]["labels"]["label"] == "yellow"
        assert [h.unit for h in book.search("spider")] == ["layer4.0:0"]
        assert [h.unit for h in book.search("yellow")] == ["layer4.0:1"]   # not the example's category
    again = CliRunner().invoke(main, ["atlas", "upgrade", str(folder)])
    assert "up to date" in again.output


def test_an_atlas_of_a_newer_schema_is_refused_not_changed(tmp_path):
    folder = version_1_atlas(tmp_path / "new")
    conn = sqlite3.connect(folder / store.DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(AtlasError, match="newer mmneurons"):
        Atlas.open(folder)
    with pytest.raises(AtlasError, match="newer mmneurons"):
        store.connect(folder, write=True)
    conn = sqlite3.connect(folder / store.DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    conn.close()


def test_a_folder_without_an_atlas_is_named(tmp_path):
    with pytest.raises(AtlasError, match="is not an atlas"):
        Atlas.open(tmp_path)
    result = CliRunner().invoke(main, ["atlas", "info", str(tmp_path)])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "is not an atlas" in result.output


def test_files_are_stored_once_by_content_and_never_half(tmp_path):
    digest = store.put_file(tmp_path, b"png bytes", ".png")
    path = store.file_path(tmp_path, digest, ".png")
    assert path.read_bytes() == b"png bytes" and path.parent.name == digest[:2]
    mtime = path.stat().st_mtime_ns
    assert store.put_file(tmp_path, b"png bytes", ".png") == digest and path.stat().st_mtime_ns == mtime
    (path.parent / ".tmp-abc").write_bytes(b"half")      # what a killed build leaves behind
    (path.parent / "notes.txt").write_bytes(b"mine")
    assert store.remove_partial_files(tmp_path) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, "notes.txt"])


def test_values_are_canonical_json():
    assert store.dumps({"b": 1.0, "a": [float("nan"), float("inf"), 2]}) == '{"a":[null,null,2],"b":1.0}'
    assert store.search_text({"label": "spider", "score": 1.0, "file": "ab" * 32, "concepts": ["cat"]}) == "spider"
