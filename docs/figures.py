"""Make the README's figures from the embedded demo model: `uv run python docs/figures.py`."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from mmneurons.images import font
from mmneurons.models import load_model
from mmneurons.registry import get_registry

HERE = Path(__file__).parent


def main() -> None:
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
    tiles = [(r.image, f"{concept} (unit {c})") for (concept, c), r in zip(chosen, results)]
    tiles.append((text[0].image, 'text: "a star"'))
    side, label = 192, 22
    sheet = Image.new("RGB", (side * len(tiles), side + label), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, caption) in enumerate(tiles):
        sheet.paste(img.convert("RGB").resize((side, side), Image.Resampling.LANCZOS), (i * side, label))
        draw.text((i * side + 6, 3), caption, fill=(0, 0, 0), font=font("DejaVuSans.ttf", 14))
    (HERE / "img").mkdir(exist_ok=True)
    sheet.save(HERE / "img" / "featurevis.png")
    (HERE / "img" / "featurevis.json").write_text(json.dumps(
        {"shown": [{"target": r.target, "activation": r.activation, "gray": r.activation_gray} for r in results + text],
         "renders_below_gray_or_noise": failed, "candidates": len(rendered)}, indent=1))
    print("wrote", HERE / "img" / "featurevis.png")


if __name__ == "__main__":
    main()
