"""``mmneurons atlas export``: the static site in headless Chromium, from disk with no server."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urldefrag

import pytest
from click.testing import CliRunner

from mmneurons.atlas import Atlas
from mmneurons.cli import main

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def site(reference_atlas, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "html"
    result = CliRunner().invoke(main, ["atlas", "export", str(reference_atlas), "--html", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_every_page_link_and_image_of_the_site_works_from_disk(site, browser, reference_atlas):
    page = browser.new_page()
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    seen, queue = set(), [(site / "index.html").as_uri()]
    images = 0
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        assert url.startswith(site.as_uri()), f"a link leaves the site: {url}"
        page.goto(url)
        broken = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0))"
                                                  ".map(i => i.src)")
        assert not broken, f"{url}: images that do not load: {broken[:3]}"
        images += page.eval_on_selector_all("img", "imgs => imgs.length")
        for href in page.eval_on_selector_all("a", "links => links.map(a => a.href)"):
            target = urldefrag(href).url
            assert Path(target.removeprefix("file://")).is_file(), f"{url} links to a missing page {href}"
            queue.append(target)
    assert not failed, failed[:5]
    with Atlas.open(reference_atlas) as book:
        layers = book.layers()
        units = sum(layer.channels for layer in layers)
    assert len(seen) == 1 + len(layers) + units         # index, layer indexes, one page per unit
    assert images >= units * (1 + 3 + 3) * 1                   # each unit page: visualization, top, bottom
    page.close()
    with Atlas.open(reference_atlas) as book:                  # each render's path check, next to it
        path = book.unit("layer2.0:5").values["path"]
    text = (site / "layer2.0" / "5.html").read_text()
    assert f"path check {path['score']:.2f}:" in text and ("class='warn'" in text) == bool(path["warning"])


def test_the_layer_index_sorts_by_a_column(site, browser, reference_atlas):
    page = browser.new_page()
    page.goto((site / "layer2.0" / "index.html").as_uri())
    header = page.locator("th", has_text="label score")
    column = [h.inner_text() for h in page.locator("th").all()].index("label score")

    def values() -> list[float]:
        return [float(v) for v in page.eval_on_selector_all(
            "tbody tr", f"rows => rows.map(r => r.cells[{column}].dataset.v)")]

    assert len(values()) == 128
    header.click()
    ascending = values()
    header.click()
    descending = values()
    assert ascending == sorted(ascending) and descending == sorted(descending, reverse=True)
    assert ascending != descending
    first = page.eval_on_selector("tbody tr a", "a => a.getAttribute('href')")
    with Atlas.open(reference_atlas) as book:
        best = max(book.layer("layer2.0").table(), key=lambda r: r["neuron_label.labels.score"])
    assert first == f"{best['channel']}.html"
    page.goto((site / "layer2.0" / first).as_uri())  # the unit's page: its label with the evidence
    with Atlas.open(reference_atlas) as book:
        label = book.unit(best["unit"]).values["neuron_label"]["labels"]
    text = page.inner_text("body")
    assert f"runners-up {', '.join(label['runners_up'])}" in text
    assert "evidence images: " + ", ".join(label["evidence"]) in text
    page.close()


def test_the_export_never_writes_into_a_folder_of_other_files(reference_atlas, tmp_path):
    (tmp_path / "mine.txt").write_text("mine")
    result = CliRunner().invoke(main, ["atlas", "export", str(reference_atlas), "--html", str(tmp_path)])
    assert result.exit_code == 1 and "holds other files" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_the_layer_index_filters_as_you_type(site, browser, reference_atlas):
    page = browser.new_page()
    page.goto((site / "layer1.0" / "index.html").as_uri())
    with Atlas.open(reference_atlas) as book:
        rows = book.layer("layer1.0").table()
    label = rows[5]["neuron_label.labels.label"]
    page.fill("#q", label)
    visible = page.eval_on_selector_all("tbody tr", "rows => rows.filter(r => r.style.display !== 'none')"
                                                    ".map(r => r.cells[0].textContent)")
    assert "5" in visible and len(visible) < 64
    assert page.inner_text("#shown") == str(len(visible))
    page.fill("#q", "")
    assert page.eval_on_selector_all("tbody tr", "rows => rows.filter(r => r.style.display !== 'none').length") == 64
    page.close()
