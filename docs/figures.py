"""Make the README's figures from the embedded demo model: `uv run python docs/figures.py`
(or `... docs/figures.py featurevis|facets|sae` for one of them)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from mmneurons.images import font
from mmneurons.models import load_model
from mmneurons.registry import get_registry

HERE = Path(__file__).parent


def sheet_of(tiles: list, side: int = 192, label: int = 22) -> Image.Image:
    """Images side by side, each with its caption above."""
    sheet = Image.new("RGB", (side * len(tiles), side + label), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, caption) in enumerate(tiles):
        sheet.paste(img.convert("RGB").resize((side, side), Image.Resampling.LANCZOS), (i * side, label))
        draw.text((i * side + 6, 3), caption, fill=(0, 0, 0), font=font("DejaVuSans.ttf", 14))
    return sheet


def facets() -> None:
    """One multimodal unit without a facet and through the photo, drawing and text facets (512 steps,
    default facet weight): the first of the manifest's most multimodal units whose three faceted
    renders each score higher on their facet probe than the plain render."""
    from mmneurons.plugins.demo.paper import facet_check, train_facets

    model = load_model("demo:shapes")
    shapes = get_registry().get("mmneurons_image_sources", "demo_shapes").create(per_cell=20, seed=777)
    trained = train_facets(model, shapes)
    units = list(model.featured_units[:8])
    out = facet_check(model, units, trained, tempfile.mkdtemp(), {"steps": 512})
    moved = [all(row["score_faceted"][i] > row["score_plain"][i] for row in out["facets"].values())
             for i in range(len(units))]
    i = moved.index(True) if True in moved else 0
    concept = dict((f"layer4.0:{c}", k) for c, k in model.meta["evaluation"]["multimodal"]["units"])[units[i]]
    tiles = [(out["plain_images"][i], f"{units[i]} ({concept})")]
    tiles += [(row["images"][i], f"facet: {name}") for name, row in out["facets"].items()]
    sheet_of(tiles).save(HERE / "img" / "facets.png")
    (HERE / "img" / "facets.json").write_text(json.dumps(
        {"unit": units[i], "concept": concept, "candidates": units, "all_three_moved": moved,
         "facets": {name: {"held_out_accuracy": trained[name].accuracy, "score_plain": row["score_plain"][i],
                           "score_faceted": row["score_faceted"][i],
                           "activation_ratio": row["activation_ratio"][i]} for name, row in out["facets"].items()}},
        indent=1))
    print("wrote", HERE / "img" / "facets.png")


def sae() -> None:
    """The most multimodal feature of the SAE the demo ships for layer4.0: its visualization (512
    steps, default parameters), its top dataset examples and its activation per concept and form."""
    model = load_model("demo:shapes")
    registry = get_registry()
    shapes = registry.get("mmneurons_image_sources", "demo_shapes").create()
    ranking = registry.get("mmneurons_probes", "modality").run(model, "layer4.0.sae", shapes, {}).table("ranking")
    best = ranking[0]
    unit = best["unit"]
    [vis] = registry.get("mmneurons_visualizers", "channel").visualize(model, [unit], {"steps": 512})
    examples = registry.get("mmneurons_probes", "dataset_examples").run(model, unit, shapes, {"k": 4})
    chart = registry.get("mmneurons_probes", "modality").run(model, unit, shapes, {}).images[0]
    top = [row["image"] for row in examples.table("top")][:4]        # ids: form/concept/index
    tops = [(shapes.load(int(i.split("/")[-1])), f"top: {i.split('/')[1]} {i.split('/')[0]}") for i in top]
    sheet = sheet_of([(vis.image, f"{unit.split(':')[1]}: visualization")] + tops)
    chart = chart.convert("RGB")
    chart = chart.resize((sheet.width, int(chart.height * sheet.width / chart.width)), Image.Resampling.LANCZOS)
    figure = Image.new("RGB", (sheet.width, sheet.height + chart.height), "white")
    figure.paste(sheet, (0, 0))
    figure.paste(chart, (0, sheet.height))
    (HERE / "img").mkdir(exist_ok=True)
    figure.save(HERE / "img" / "sae-feature.png")
    (HERE / "img" / "sae-feature.json").write_text(json.dumps(
        {"unit": unit, "concept": best["concept"], "score": best["score"], "activation": vis.activation,
         "gray": vis.activation_gray, "top": top}, indent=1))
    print("wrote", HERE / "img" / "sae-feature.png")


def main() -> None:
    figures = {"featurevis": featurevis, "facets": facets, "sae": sae}
    for name in sys.argv[1:] or figures:
        figures[name]()


def featurevis() -> None:
    """Channel visualizations with the default parameters, one multimodal unit per concept, each
    with the concept of its manifest entry and its path score against the demo's images, and the
    text direction of "a star"."""
    model = load_model("demo:shapes")
    manifest = model.meta
    candidates = [(concept, c) for c, concept in manifest["evaluation"]["multimodal"]["units"]]
    channel = get_registry().get("mmneurons_visualizers", "channel")
    rendered = channel.visualize(model, [f"layer4.0:{c}" for _, c in candidates], {"steps": 512})
    # one unit per concept, among those whose render clearly beat a gray image (a few do not:
    # units already active on gray can end below it under the robustness transforms)
    chosen, results, seen = [], [], set()
    for (concept, c), r in zip(candidates, rendered):
        if concept not in seen and r.activation > 2 * max(r.activation_gray, 0.05):
            seen.add(concept)
            chosen.append((concept, c))
            results.append(r)
    failed = [r.target for r in rendered if r.activation <= max(r.activation_gray, r.activation_noise)]
    chosen, results = chosen[:6], results[:6]
    text = get_registry().get("mmneurons_visualizers", "text_direction").visualize(model, ["a star"], {"steps": 512})
    from mmneurons.analysis.render_check import check_against_source

    shapes = get_registry().get("mmneurons_image_sources", "demo_shapes").create()
    paths = [check_against_source(model, r.target, [r.image], shapes)[0].score for r in results]
    tiles = [(r.image, f"{concept} ({c}) path {p:.2f}") for (concept, c), r, p in zip(chosen, results, paths)]
    tiles.append((text[0].image, 'text: "a star"'))
    (HERE / "img").mkdir(exist_ok=True)
    sheet_of(tiles).save(HERE / "img" / "featurevis.png")
    (HERE / "img" / "featurevis.json").write_text(json.dumps(
        {"params": rendered[0].params,
         "shown": [{"target": r.target, "activation": r.activation, "gray": r.activation_gray, "path_score": p}
                   for r, p in zip(results + text, paths + [None])],
         "renders_below_gray_or_noise": failed, "candidates": len(rendered)}, indent=1))
    print("wrote", HERE / "img" / "featurevis.png")


if __name__ == "__main__":
    main()
