"""The app in a real browser: `streamlit run streamlit_app.py` on a free loopback port, every page
opened in headless Chromium (Debian's, driven by Playwright), each script run awaited, the key
elements checked after the clicks a user would make, and a screenshot of every page saved.

Screenshots go to a temporary folder, or to MMNEURONS_SCREENSHOT_DIR (the README's pictures are
made with MMNEURONS_SCREENSHOT_DIR=docs/img). `.ci/run` runs this test like every other one; it
fails, not skips, when Chromium is missing.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: a multimodal unit of the demo model (modality probe: "star" in photo, drawing and text)
STAR_UNIT = 489


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(folder: Path, **env_extra: str) -> Iterator[str]:
    """`streamlit run streamlit_app.py` on a free loopback port until the block ends; its URL."""
    port = free_port()
    log = folder / "streamlit.log"
    env = {**os.environ, "MMNEURONS_LOAD_ENTRYPOINTS": "0", "MMNEURONS_OFFLINE": "1", "MMNEURONS_DEVICE": "cpu",
           **env_extra}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not come up on {url}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("app")) as url:
        yield url


@pytest.fixture(scope="module")
def slow_url(tmp_path_factory):
    """A second server, with a third-party probe installed that works for a minute (the shared one
    stays as users see it: its pages are the README's pictures)."""
    from ...helpers import install_fixture_package

    site = install_fixture_package("mmneurons_slow", tmp_path_factory.mktemp("site"))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    with serve(tmp_path_factory.mktemp("slow-app"), MMNEURONS_LOAD_ENTRYPOINTS="1", PYTHONPATH=path) as url:
        yield url


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("MMNEURONS_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    yield pg
    context.close()


def settle(page, timeout: float = 240) -> None:
    """Wait until the app is drawn and no script run is in progress (twice, to step over the
    moment between a click and the run it starts)."""
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    for _ in range(2):
        page.wait_for_timeout(700)
        page.wait_for_function(
            "() => !document.querySelector(\"[data-testid='stStatusWidget']\")"
            " && !document.querySelector(\"[data-testid='stSkeleton']\")",
            timeout=timeout * 1000)
    page.wait_for_timeout(300)


def main(page):
    return page.locator("[data-testid='stMain']")


def click(page, name: str, role: str = "button") -> None:
    main(page).get_by_role(role, name=name, exact=True).first.click()
    settle(page)


def snap(page, path: Path) -> None:
    """A screenshot of the whole page: the window is made as tall as the app's scrolled content."""
    height = page.evaluate("document.querySelector(\"[data-testid='stMain']\").scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(800, min(int(height), 6000))})
    page.evaluate("document.querySelector(\"[data-testid='stMain']\").scrollTo(0, 0)")
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))


def no_failures(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.inner_text("[data-testid='stMain']")
    text = page.inner_text("[data-testid='stMain']")
    assert " failed:" not in text and "Could not load model" not in text, text[:3000]


def open_page(page, url: str) -> None:
    page.goto(url)
    settle(page)
    no_failures(page)


def test_neuron_page(page, app_url, shots):
    open_page(page, f"{app_url}/?model=demo:shapes&layer=layer4.0&unit={STAR_UNIT}")
    assert main(page).get_by_text(f"layer4.0:{STAR_UNIT}").first.is_visible()
    # the URL's unit reached the widget, and the widgets come from the plugins' params
    assert page.get_by_label("Unit (0-511)").input_value() == str(STAR_UNIT)
    click(page, "Render channel")
    assert main(page).locator("[data-testid='stImage']").count() >= 1
    assert main(page).get_by_text("activation").first.is_visible()
    click(page, "modality", role="tab")
    click(page, "Run modality")
    no_failures(page)
    assert main(page).get_by_text("top concept").first.is_visible()
    assert main(page).get_by_text("star").first.is_visible()
    # downloads are made when clicked: the CSV of the unit's concept x modality table arrives
    with page.expect_download() as download:
        main(page).get_by_role("button", name="CSV: unit", exact=True).click()
    body = Path(download.value.path()).read_text()
    assert body.splitlines()[0] == "concept,drawing,photo,text" and len(body.splitlines()) == 13
    snap(page, shots / "app-neuron.png")


def test_layer_page(page, app_url, shots):
    open_page(page, f"{app_url}/layer?model=demo:shapes&layer=layer4.0")
    click(page, "Run modality")
    click(page, "Render thumbnails for 24 units")
    no_failures(page)
    cards = page.locator("[data-testid='stMain'] [data-testid='stImage']")
    assert cards.count() >= 24
    snap(page, shots / "app-layer.png")
    click(page, "Open unit")  # the top unit by multimodality score
    assert main(page).get_by_role("heading", name="Neuron").is_visible()
    assert page.get_by_label("Unit (0-511)").input_value() == "257"


def test_search_page(page, app_url, shots):
    open_page(page, f"{app_url}/search?model=demo:shapes&q=star")  # ?q= runs the search: no click
    assert main(page).get_by_role("button", name="Search with neuron_search").count() == 0
    # thumbnails the layer test rendered are cached for every session: only the rest are left to render
    render = main(page).get_by_role("button", name=re.compile(r"^Render thumbnails for \d+ units$"))
    if render.count():
        render.first.click()
        settle(page)
    no_failures(page)
    assert main(page).locator("[data-testid='stImage']").count() >= 12
    assert main(page).get_by_role("button", name="Open unit", exact=True).count() == 12
    snap(page, shots / "app-search.png")


def test_attribution_page(page, app_url, shots):
    open_page(page, f"{app_url}/attribution?model=demo:shapes")
    click(page, "Attribute with ig")
    no_failures(page)
    assert page.get_by_text("convergence delta").first.is_visible()
    snap(page, shots / "app-attribution.png")


def test_typographic_page(page, app_url, shots):
    open_page(page, f"{app_url}/typographic?model=demo:shapes")
    assert main(page).get_by_text("Prediction:").first.is_visible()
    click(page, "Run typographic_attack")
    no_failures(page)
    assert page.get_by_text("success rate").first.is_visible()
    snap(page, shots / "app-typographic.png")


def test_associations_page(page, app_url, shots):
    open_page(page, f"{app_url}/associations?model=demo:shapes")
    assert main(page).get_by_text("not why").first.is_visible()
    click(page, "Run association_audit")
    no_failures(page)
    assert page.get_by_text("top pair").first.is_visible() and page.get_by_text("pairs (15 rows)").first.is_visible()
    snap(page, shots / "app-associations.png")


def test_plugins_page(page, app_url, shots):
    open_page(page, f"{app_url}/plugins")
    assert page.get_by_text("Every plugin loaded and every hook answered.").is_visible()
    snap(page, shots / "app-plugins.png")


def test_a_typed_model_id_that_cannot_load_shows_the_providers_message(page, app_url):
    open_page(page, f"{app_url}/search")
    box = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first
    box.click()
    page.keyboard.type("openclip:RN50@openai")
    page.keyboard.press("Enter")
    settle(page)
    text = main(page).inner_text()
    assert "Could not load model" in text and "openclip:RN50@openai" in text and "demo:shapes" in text
    assert page.locator("[data-testid='stException']").count() == 0


def test_a_new_user_opens_onto_a_multimodal_unit_with_its_results(page, app_url):
    """Last in this module: the results may come from earlier tests' runs on this server (the
    computing and the disk store are checked under AppTest)."""
    open_page(page, f"{app_url}/")  # what `mmneurons app` opens: no model, no unit
    assert main(page).get_by_text(f"layer4.0:{STAR_UNIT}").first.is_visible()
    assert main(page).locator("[data-testid='stImage']").count() >= 1  # its feature visualization
    click(page, "modality", role="tab")
    assert main(page).get_by_text("top concept").first.is_visible()
    assert main(page).get_by_role("button", name="Run modality").count() == 0


def _start_slow_run(page) -> None:
    main(page).get_by_role("button", name="Run slow", exact=True).first.click()  # no settle: it runs a minute
    main(page).get_by_role("button", name="Stop", exact=True).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # under way: it holds the model


def test_stop_ends_a_run_at_once_and_frees_the_model(page, slow_url):
    open_page(page, f"{slow_url}/?model=demo:shapes&layer=layer4.0&unit=7")
    click(page, "slow", role="tab")
    _start_slow_run(page)
    started = time.monotonic()
    main(page).get_by_role("button", name="Stop", exact=True).first.click()
    settle(page)
    assert time.monotonic() - started < 30, "the minute-long run went on after Stop"
    assert main(page).get_by_role("button", name="Run slow", exact=True).count() == 1  # no result: asked again
    _start_slow_run(page)  # the model is free: the next run starts at once
    assert "waiting for" not in main(page).inner_text()
    main(page).get_by_role("button", name="Stop", exact=True).first.click()
    settle(page)
    no_failures(page)



@pytest.fixture(scope="module")
def atlas_url(tmp_path_factory, demo_atlas):
    """A server whose pages read an atlas of the demo model's layer4.0: the session's small one, or
    the one MMNEURONS_BROWSER_ATLAS names (the README's picture: the full `mmneurons atlas build`)."""
    folder = Path(os.environ.get("MMNEURONS_BROWSER_ATLAS") or demo_atlas).resolve()
    with serve(tmp_path_factory.mktemp("atlas-app"), MMNEURONS_ATLAS=str(folder)) as url:
        yield url


def loaded_images(page) -> int:
    """Images in the page that loaded; fails on any that did not."""
    broken = page.eval_on_selector_all("[data-testid='stMain'] img",
                                       "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0
    return page.eval_on_selector_all("[data-testid='stMain'] img", "imgs => imgs.length")


def test_pages_read_from_an_atlas_without_a_click(page, atlas_url, shots):
    open_page(page, f"{atlas_url}/layer?model=demo:shapes&layer=layer4.0")
    assert main(page).get_by_text("512 of 512 units").first.is_visible()
    assert main(page).locator("[data-testid='stDataFrame']").count() == 1
    assert loaded_images(page) >= 24             # the cards' stored visualizations
    snap(page, shots / "app-atlas-layer.png")
    open_page(page, f"{atlas_url}/?model=demo:shapes&layer=layer4.0&unit={STAR_UNIT}")
    assert main(page).get_by_text("Label:").first.is_visible()
    assert main(page).get_by_text("from the atlas").first.is_visible()
    assert loaded_images(page) >= 1 + 3 + 3      # visualization, top and bottom examples
    assert page.get_by_text("Page not found").count() == 0
    snap(page, shots / "app-atlas-neuron.png")
