"""WebDataset shards and parquet files as image sources: records, categories, bad records skipped
and counted, and scans that equal a scan of the same images in a folder."""

from __future__ import annotations

import numpy as np
import pytest
from .helpers import png_bytes, write_shard

from mmneurons.activations import scan_top_k
from mmneurons.dataset_sources import ParquetSource, WebDatasetSource, expand_paths
from mmneurons.images import FolderSource, ImageLoadError, to_pixels


def test_webdataset_samples_read_in_order_with_labels_and_captions(webdataset_shards, random_images):
    shards, _ = webdataset_shards
    source = WebDatasetSource(str(shards / "shard-{00000..00001}.tar"))
    assert len(source) == 40 and source.problems == []
    record = source.record(21)
    assert record.id == "shard-00001.tar/sample0021" and record.category == "0"
    assert record.meta["txt"] == "random image 21"
    assert np.array_equal(to_pixels(source.load(21), 32), to_pixels(random_images[21], 32))
    assert WebDatasetSource(shards, category="txt").record(3).category == "random image 3"
    assert WebDatasetSource(shards, category="none").record(3).category is None
    assert "2 shards" in WebDatasetSource(shards).describe()


def test_a_webdataset_scan_equals_the_folder_scan(tiny_resnet, webdataset_shards):
    shards, folder = webdataset_shards
    a = scan_top_k(tiny_resnet, WebDatasetSource(shards), "layer3", k=4, bottom=True, batch_size=8, num_workers=2)
    b = scan_top_k(tiny_resnet, FolderSource(folder), "layer3", k=4, bottom=True, batch_size=8, num_workers=0)
    assert np.array_equal(a.top_indices, b.top_indices) and np.array_equal(a.top_values, b.top_values)
    assert np.array_equal(a.bottom_indices, b.bottom_indices)
    assert a.categories[:3] == ["0", "1", "2"]


def test_bad_webdataset_records_are_skipped_counted_and_named(tiny_resnet, tmp_path, random_images):
    good = png_bytes(random_images[0])
    write_shard(tmp_path / "a.tar", [
        ("ok1", {"png": good, "cls": "x"}),
        ("corrupt", {"jpg": b"\xff\xd8\xff\xe0 not really a jpeg"}),
        ("noimage", {"txt": "a caption and nothing else"}),
        ("empty", {"png": b""}),
        ("ok2", {"jpg": png_bytes(random_images[1])}),  # the extension lies; PIL reads what it is
    ])
    whole = (tmp_path / "a.tar").read_bytes()
    write_shard(tmp_path / "b.tar", [("ok3", {"png": good}), ("cut", {"png": png_bytes(random_images[2])})])
    data = (tmp_path / "b.tar").read_bytes()
    (tmp_path / "b.tar").write_bytes(data[:1024 + 512 + len(good) + 512 + 600])  # ends inside "cut"'s image
    source = WebDatasetSource([tmp_path / "a.tar", tmp_path / "b.tar"])
    assert len(source) == 7 and (tmp_path / "a.tar").read_bytes() == whole
    result = scan_top_k(tiny_resnet, source, "layer2", k=2, num_workers=0)
    skipped = dict(result.skipped)
    assert result.n_images == 3 and len(skipped) == 4
    assert "corrupt or truncated" in skipped["a.tar/corrupt"] or "not an image" in skipped["a.tar/corrupt"]
    assert "no image in this sample (members: txt)" in skipped["a.tar/noimage"]
    assert "empty" in skipped["a.tar/empty"]
    assert "truncated" in skipped["b.tar/cut"]


def test_a_shard_that_is_not_a_tar_is_a_problem_not_a_crash(tmp_path, random_images):
    write_shard(tmp_path / "good.tar", [("a", {"png": png_bytes(random_images[0])})])
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar file at all" * 40)
    source = WebDatasetSource(tmp_path)
    assert len(source) == 1 and "junk.tar: unreadable after 0 samples" in source.problems[0]
    with pytest.raises(ImageLoadError, match="hold no samples"):
        WebDatasetSource(tmp_path / "junk.tar")
    with pytest.raises(ImageLoadError, match="does not exist"):
        WebDatasetSource(tmp_path / "missing-{0..3}.tar")


def test_brace_ranges_keep_zero_padding(tmp_path):
    for n in (8, 9, 10):
        (tmp_path / f"s-{n:03d}.tar").write_bytes(b"")
    names = [p.name for p in expand_paths(str(tmp_path / "s-{008..010}.tar"), ".tar", "shard")]
    assert names == ["s-008.tar", "s-009.tar", "s-010.tar"]


def _img2dataset_parquet(path, images, *, statuses=None):
    """A parquet file as img2dataset writes it with output_format=parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(images)
    statuses = statuses or ["success"] * n
    table = pa.table({
        "key": [f"{i:09d}" for i in range(n)],
        "caption": [f"caption {i}" for i in range(n)],
        "url": [f"http://example.invalid/{i}.jpg" for i in range(n)],
        "status": statuses,
        "error_message": [None if s == "success" else "HTTP 404" for s in statuses],
        "jpg": [png_bytes(im) if s == "success" else None for im, s in zip(images, statuses)],
    })
    pq.write_table(table, path, row_group_size=7)


def test_a_parquet_scan_equals_the_folder_scan(tiny_resnet, webdataset_shards, random_images, tmp_path):
    _, folder = webdataset_shards
    _img2dataset_parquet(tmp_path / "part-0.parquet", random_images[:25])
    _img2dataset_parquet(tmp_path / "part-1.parquet", random_images[25:])
    source = ParquetSource(tmp_path)
    assert len(source) == 40 and source.record(26).id == "part-1.parquet:000000001"
    assert source.record(26).category == "caption 1" and source.record(26).meta["url"].endswith("/1.jpg")
    a = scan_top_k(tiny_resnet, source, "layer3", k=4, batch_size=8, num_workers=0)
    b = scan_top_k(tiny_resnet, FolderSource(folder), "layer3", k=4, batch_size=8, num_workers=0)
    assert np.array_equal(a.top_indices, b.top_indices) and np.array_equal(a.top_values, b.top_values)


def test_parquet_failed_rows_and_bad_bytes_are_skipped_and_named(tiny_resnet, tmp_path, random_images):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _img2dataset_parquet(tmp_path / "d.parquet", random_images[:4], statuses=["success", "failed_to_download",
                                                                              "success", "success"])
    table = pq.read_table(tmp_path / "d.parquet")
    jpg = table.column("jpg").to_pylist()
    jpg[3] = b"garbage bytes"
    pq.write_table(table.set_column(table.schema.get_field_index("jpg"), "jpg", pa.array(jpg, pa.binary())),
                   tmp_path / "d.parquet")
    result = scan_top_k(tiny_resnet, ParquetSource(tmp_path / "d.parquet"), "layer2", k=1, num_workers=0)
    skipped = dict(result.skipped)
    assert result.n_images == 2
    assert skipped["d.parquet:000000001"] == "d.parquet:000000001: marked failed_to_download: HTTP 404"
    assert "d.parquet:000000003" in skipped


def test_parquet_with_paths_and_labels(tmp_path, webdataset_shards, random_images):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, folder = webdataset_shards
    files = sorted(folder.iterdir())[:3]
    pq.write_table(pa.table({"path": [str(files[0]), f"{folder.name}/{files[1].name}", "nowhere.png"],
                             "label": ["cat", "dog", "cat"]}), folder.parent / "sub.parquet")
    source = ParquetSource(folder.parent / "sub.parquet")
    assert [source.record(i).category for i in range(3)] == ["cat", "dog", "cat"]
    assert np.array_equal(to_pixels(source.load(1), 32), to_pixels(random_images[1], 32))
    with pytest.raises(ImageLoadError, match="no such file"):
        source.load(2)
    pq.write_table(pa.table({"x": [1]}), tmp_path / "none.parquet")
    with pytest.raises(ImageLoadError, match="no image column .* columns: x"):
        ParquetSource(tmp_path / "none.parquet")
    (tmp_path / "fake.parquet").write_bytes(b"not parquet")
    with pytest.raises(ImageLoadError, match="not a parquet file"):
        ParquetSource(tmp_path / "fake.parquet")


def test_many_shards_keep_few_files_open(tmp_path, random_images):
    for n in range(12):
        write_shard(tmp_path / f"s{n:02d}.tar", [(f"k{n}", {"png": png_bytes(random_images[n])})])
    source = WebDatasetSource(tmp_path)
    for i in range(12):
        assert np.array_equal(to_pixels(source.load(i), 16), to_pixels(random_images[i], 16))
        assert len(source._handles) <= 8
