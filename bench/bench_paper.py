"""The paper's three remaining methods checked on the embedded model (docs/paper.md's numbers):
faceted feature visualization, concept decomposition, causal ablation.

    uv run python bench/bench_paper.py [--per-cell 20] [--steps 512] [--only facets,decomposition,ablation]
                                       [--facet-weights 1] [--facet-negative] [--images-out DIR]

The images are the demo's concept x form probe set with the held-out evaluation seed; the facets
are trained on another seed. Prints markdown tables and the CPU they ran on.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from mmneurons.models import load_model
from mmneurons.plugins.demo.evaluate import EVAL_SEED
from mmneurons.plugins.demo.paper import ablation_check, decomposition_check, facet_check, train_facets
from mmneurons.registry import get_registry


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def facets(model, args) -> None:
    shapes = get_registry().get("mmneurons_image_sources", "demo_shapes")
    start = time.perf_counter()
    trained = train_facets(model, shapes.create(per_cell=20, seed=777), args.facet_layer)
    print(f"\nfacets on {args.facet_layer} (20 images per concept and form, seed 777), "
          f"{time.perf_counter() - start:.1f} s: " + ", ".join(f"{k} held-out accuracy {f.accuracy:.3f}"
                                                            for k, f in trained.items()))
    units = list(model.featured_units)
    print(f"\n{len(units)} multimodal units, {args.steps} steps; rate = units whose faceted render the facet probe "
          f"scores above the plain render; activation = faceted / plain")
    print("| form | facet weight | negative weights | facet | rate | median activation | lowest activation "
          "| seconds |")
    print("|---|---|---|---|---|---|---|---|")
    signs = (False, True) if args.facet_negative else (False,)
    settings = [(form, float(w), negative) for form in args.facet_forms.split(",")
                for w in args.facet_weights.split(",") for negative in signs]
    for form, weight, negative in settings:
        start = time.perf_counter()
        out = facet_check(model, units, trained, tempfile.mkdtemp(), {"steps": args.steps},
                          {"facet_weight": weight, "facet_negative": negative, "facet_form": form})
        seconds = time.perf_counter() - start
        for name, row in out["facets"].items():
            ratio = np.array(row["activation_ratio"], dtype=float)
            print(f"| {form} | {weight:g} | {negative} | {name} | {row['rate']:.2f} | {np.nanmedian(ratio):.2f} | "
                  f"{np.nanmin(ratio):.2f} | {seconds:.0f} |", flush=True)
        if args.images_out:
            folder = Path(args.images_out) / f"{form}-w{weight:g}{'-neg' if negative else ''}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, unit in enumerate(units):
                out["plain_images"][i].save(folder / f"{unit.replace(':', '_')}-plain.png")
                for name, row in out["facets"].items():
                    row["images"][i].save(folder / f"{unit.replace(':', '_')}-{name}.png")


def decomposition(model, source) -> None:
    for method in ("gradient", "fit"):
        start = time.perf_counter()
        rows = decomposition_check(model, source, method=method, units=10)
        seconds = time.perf_counter() - start
        quality = "cosine" if method == "gradient" else "r2"
        print(f"\nconcept decomposition, method {method} ({seconds:.1f} s for 12 concepts): "
              f"3+ of top 5 own {sum(r['own'] >= 3 for r in rows)}/12, top unit own "
              f"{sum(r['top_categories'][0] == r['concept'] for r in rows)}/12, causal check "
              f"{sum(r['causal_rank'] == 0 for r in rows)}/12")
        print(f"| concept | top 5 units (their top concept) | own | {quality} @5 | {quality} @10 "
              f"| raising the top unit raises most |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            units = ", ".join(f"{u} ({c})" for u, c in zip(r["units"], r["top_categories"]))
            print(f"| {r['concept']} | {units} | {r['own']} | {r[quality + '_at_5']:.3f} | {r[quality + '_at_10']:.3f} "
                  f"| {r['raised_most']} |")


def ablation(model, source) -> None:
    for mode in ("zero", "mean"):
        start = time.perf_counter()
        rows = ablation_check(model, source, units=5, mode=mode)
        seconds = time.perf_counter() - start
        print(f"\nablation of each concept's 5 most multimodal units, to {mode} ({seconds:.1f} s): accuracy "
              f"selectivity >= 3x {sum(r['accuracy_selectivity'] >= 3 for r in rows)}/12, true-class logit "
              f"selectivity >= 3x {sum(r['logit_selectivity'] >= 3 for r in rows)}/12")
        print("| concept | units | accuracy drop (others' mean) | logit drop (others' mean) "
              "| logit drop photo / drawing / text |")
        print("|---|---|---|---|---|")
        for r in rows:
            forms = " / ".join(f"{r['by_form'][f]['logit_drop']:.2f}" for f in ("photo", "drawing", "text"))
            print(f"| {r['concept']} | {', '.join(map(str, r['units']))} | {r['accuracy_drop']:.3f} "
                  f"({r['others_accuracy_drop']:.3f}) | {r['logit_drop']:.2f} ({r['others_logit_drop']:.3f}) "
                  f"| {forms} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-cell", type=int, default=20, help="held-out images per concept and form")
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--only", default="facets,decomposition,ablation")
    parser.add_argument("--facet-layer", default="layer3.0")
    parser.add_argument("--facet-weights", default="1")
    parser.add_argument("--facet-negative", action="store_true", help="also with the probes' negative weights")
    parser.add_argument("--facet-forms", default="attribution", help="attribution (the paper's), activation")
    parser.add_argument("--images-out", default=None, help="save every render here")
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    model = load_model("demo:shapes")
    source = get_registry().get("mmneurons_image_sources", "demo_shapes").create(per_cell=args.per_cell, seed=EVAL_SEED)
    only = args.only.split(",")
    if "decomposition" in only:
        decomposition(model, source)
    if "ablation" in only:
        ablation(model, source)
    if "facets" in only:
        facets(model, args)


if __name__ == "__main__":
    main()
