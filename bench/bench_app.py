"""How long the app makes a user wait: seconds from a click to the drawn result, for the first
(uncached) run of each panel and for the cached redraw, on the embedded model, under Streamlit's
AppTest (the same script run a browser triggers, without the network and the browser's drawing).

    uv run python bench/bench_app.py [--model demo:shapes]

Each row clicks one button on a fresh result cache; "cached" reruns the page with the result in
the cache. Defaults everywhere (feature visualizations: 512 steps; thumbnails: 128 steps).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (page, query params, button label)
CLICKS = (
    ("neuron", {"layer": "layer4.0", "unit": "489"}, "Render channel"),
    ("neuron", {"layer": "layer4.0", "unit": "489"}, "Run dataset_examples"),
    ("neuron", {"layer": "layer4.0", "unit": "489"}, "Run rendered_words"),
    ("neuron", {"layer": "layer4.0", "unit": "489"}, "Run modality"),
    ("neuron", {"layer": "layer4.0", "unit": "489"}, "Run activation_by_category"),
    ("neuron", {"layer": "layer4.0", "unit": "489"}, "Run neuron_label"),
    ("layer", {"layer": "layer4.0"}, "Run modality"),
    ("layer", {"layer": "layer4.0"}, "Render thumbnails for 24 units"),
    ("search", {"q": "star"}, "Search with neuron_search"),
    ("attribution", {}, "Attribute with ig"),
    ("attribution", {}, "Attribute with occlusion"),
    ("typographic", {}, "Run typographic_attack"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo:shapes")
    args = parser.parse_args()
    os.environ.setdefault("MMNEURONS_LOAD_ENTRYPOINTS", "0")
    from streamlit.testing.v1 import AppTest

    from mmneurons.plugins.ui import app as router
    from mmneurons.plugins.ui import state

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, model {args.model}")
    print("| page | click | first run (s) | cached redraw (s) |\n|---|---|---|---|")
    for slug, query, label in CLICKS:
        state.results().clear()
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=1800)
        at.query_params.update({"model": args.model, **query})
        at.run()
        at.switch_page(str(router.page_file(slug))).run()
        buttons = [b for b in at.button if b.label == label]
        if not buttons:
            print(f"| {slug} | {label} | no such button | |")
            continue
        start = time.perf_counter()
        buttons[0].click().run()
        first = time.perf_counter() - start
        problems = [e.value for e in at.exception] + [e.value for e in at.error]
        start = time.perf_counter()
        at.run()
        cached = time.perf_counter() - start
        note = f" ({problems[0][:60]})" if problems else ""
        print(f"| {slug} | {label}{note} | {first:.1f} | {cached:.1f} |", flush=True)


if __name__ == "__main__":
    main()
