"""Labels and the association audit on the embedded model, where the truth is known (the manifest's
31 multimodal units of layer4.0 and their concepts): the docs/benchmarks.md tables.

    uv run python bench/bench_labels.py [--sources probe,held-out] [--seeds 1,2,3]

Labelers: neuron_label with each method over the default vocabulary and over the 12 concept words
(as a user runs it), the top rendered word (rendered_words over its default 10,000 words, and over
the label vocabulary) and the neuron-search direction's nearest word (each vocabulary word's
zero-shot gradient at a gray image, z-scored over the units; the unit's word is the one it scores
highest on). Accuracy = the label is the unit's concept; AUC = how well each labeler's confidence
(its margin over the runner-up) ranks the right labels above the wrong ones. Prints the CPU.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import time

import numpy as np

from mmneurons.activations import layer_means
from mmneurons.analysis import concept_modality_table, concept_z, modality_of, prompt_gradient
from mmneurons.images import WordSource
from mmneurons.models import load_model
from mmneurons.plugins.demo.data import CONCEPTS
from mmneurons.plugins.demo.evaluate import EVAL_SEED
from mmneurons.plugins.demo.plugin import ASSETS
from mmneurons.plugins.probes.rendered_words import default_words
from mmneurons.registry import get_registry

LAYER = "layer4.0"
SIMILAR = (("ring", "circle"), ("diamond", "square"), ("hexagon", "circle"))
DISSIMILAR = ("arrow", "moon")


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def auc(right: list[float], wrong: list[float]) -> float:
    if not right or not wrong:
        return float("nan")
    return float(np.mean([(r > w) + 0.5 * (r == w) for r in right for w in wrong]))


def score(labels: dict[int, str], confidence: dict[int, float], truth: dict[int, str]) -> tuple[int, float]:
    ok = {u: labels[u] == c for u, c in truth.items()}
    return sum(ok.values()), auc([confidence[u] for u in truth if ok[u]], [confidence[u] for u in truth if not ok[u]])


def by_margin(scores: np.ndarray, words: list[str]) -> tuple[dict, dict]:
    """Per unit (rows of ``scores`` ``[C, K]``): the best word and its margin over the second."""
    order = np.argsort(-scores, axis=1)
    best, second = np.take_along_axis(scores, order[:, :2], axis=1).T
    units = range(len(scores))
    return {u: words[order[u, 0]] for u in units}, {u: float(best[u] - second[u]) for u in units}


def labelers(model, source, truth, vocabulary) -> None:
    registry = get_registry()
    label = registry.get("mmneurons_probes", "neuron_label")
    print("| labeler | vocabulary | right (of 31) | accuracy | confidence AUC | seconds |")
    print("|---|---|---|---|---|---|")
    for method, words in itertools.product(("correlation", "soft_wpmi"), ("default", "12 concepts")):
        start = time.perf_counter()
        params = {"method": method, **({"concepts": ",".join(CONCEPTS)} if words != "default" else {})}
        result = label.run(model, LAYER, source, params)
        seconds = time.perf_counter() - start
        rows = result.table("labels")
        hits, area = score({u: rows[u]["label"] for u in truth}, {u: rows[u]["confidence"] for u in truth}, truth)
        size = result.summary["concepts"]
        print(f"| neuron_label {method}{' (default)' if method == 'correlation' and words == 'default' else ''} "
              f"| {words} ({size} words) | {hits} | {hits / 31:.0%} | {area:.2f} | {seconds:.1f} |", flush=True)
    for name, words in (("default", default_words(10_000)), ("the label vocabulary", vocabulary),
                        ("12 concepts", list(CONCEPTS))):
        start = time.perf_counter()  # what rendered_words ranks: each word's image, the layer's means
        values = layer_means(model, WordSource(words, size=model.image_size), LAYER).acts.T   # [C, words]
        top, margin = by_margin(values, words)
        hits, area = score(top, margin, truth)
        print(f"| top rendered word | {name} ({len(words)} words) | {hits} | {hits / 31:.0%} | {area:.2f} "
              f"| {time.perf_counter() - start:.1f} |", flush=True)
    for name, words in (("the label vocabulary", vocabulary), ("12 concepts", list(CONCEPTS))):
        start = time.perf_counter()
        gradients = np.stack([prompt_gradient(model, w, LAYER) for w in words])            # [K, C]
        z = (gradients - gradients.mean(axis=1, keepdims=True)) / gradients.std(axis=1, keepdims=True)
        top, margin = by_margin(z.T, words)
        hits, area = score(top, margin, truth)
        print(f"| neuron-search nearest word | {name} ({len(words)} words) | {hits} | {hits / 31:.0%} | {area:.2f} "
              f"| {time.perf_counter() - start:.1f} |", flush=True)


def polysemantic(model, source, truth) -> None:
    """Units whose modality table has two concepts at z >= 1 in every form: are both among their labels?"""
    result = get_registry().get("mmneurons_probes", "neuron_label").run(model, LAYER, source, {})
    rows = result.table("labels")
    means = layer_means(model, source, LAYER)
    records = [source.record(i) for i in means.indices]
    table, concepts, _ = concept_modality_table(means.acts, [r.category for r in records],
                                                [modality_of(r) for r in records])
    weakest = concept_z(table).min(axis=0)                                          # [K, C]
    two = [c for c in range(weakest.shape[1]) if (weakest[:, c] >= 1.0).sum() >= 2]
    found = [c for c in two if {concepts[k] for k in np.flatnonzero(weakest[:, c] >= 1.0)}
             <= set(rows[c]["labels"].split(", "))]
    several = sum(len(r["labels"].split(", ")) > 1 for r in rows)
    mm = sum(len(rows[u]["labels"].split(", ")) > 1 for u in truth)
    print(f"\npolysemantic: {several} of {len(rows)} units get further labels ({several / len(rows):.0%}; "
          f"{mm} of the 31 multimodal units); of the {len(two)} units with two concepts at z >= 1 in every form, "
          f"{len(found)} have both among their labels: {[(c, rows[c]['labels']) for c in two]}")


def audit(model, shapes, seeds) -> None:
    probe = get_registry().get("mmneurons_probes", "association_audit")
    print("\n| images | rank ring/circle | rank diamond/square | rank hexagon/circle | rank arrow/moon (of 66) "
          "| similar above arrow/moon | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, source in [("probe set (10 per cell)", shapes.create())] + \
            [(f"seed {s} (10 per cell)", shapes.create(seed=s)) for s in seeds]:
        start = time.perf_counter()
        result = probe.run(model, ",".join(CONCEPTS), source, {})
        seconds = time.perf_counter() - start
        rank = {frozenset((r["a"], r["b"])): r["rank"] for r in result.table("pairs")}
        similar = [rank[frozenset(p)] for p in SIMILAR]
        other = rank[frozenset(DISSIMILAR)]
        print(f"| {name} | {' | '.join(map(str, similar))} | {other} | {all(s < other for s in similar)} "
              f"| {seconds:.1f} |", flush=True)
    start = time.perf_counter()
    result = probe.run(model, ",".join(CONCEPTS), shapes.create(), {})
    own = result.summary["self_share"]
    rows = result.table("pairs")
    print(f"\nlogit shares ({time.perf_counter() - start:.1f} s): own units' share of each concept's logit, "
          f"against the largest share another concept's units carry")
    for concept, share in own.items():
        others = {r["a"]: r["share_of_b_logit_by_a_units"] for r in rows if r["b"] == concept}
        others.update({r["b"]: r["share_of_a_logit_by_b_units"] for r in rows if r["a"] == concept})
        best = max(others, key=others.get)
        print(f"- {concept}: own {share:.2f}, most by another: {best} {others[best]:.2f}")
    for attributes in ("ring,star", "photo,drawing,word"):
        result = probe.run(model, "ring,star", shapes.create(), {"attributes": attributes})
        print(f"\nskew of groups ring, star over attributes {attributes}: "
              f"Cramer's V {result.summary['cramers_v']:.2f}, "
              f"head MaxSkew@{result.summary['k']} {result.summary['head_max_skew']:.2f}; contingency "
              f"{result.table('contingency')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default="probe,held-out")
    parser.add_argument("--seeds", default="1,2,3", help="more probe-set seeds for the audit check")
    parser.add_argument("--only", default="labels,polysemantic,audit")
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    model = load_model("demo:shapes")
    truth = {c: concept for c, concept in json.loads((ASSETS / "manifest.json").read_text())["evaluation"]
             ["multimodal"]["units"]}
    shapes = get_registry().get("mmneurons_image_sources", "demo_shapes")
    vocabulary_probe = get_registry().get("mmneurons_probes", "neuron_label")
    vocabulary, _, _ = vocabulary_probe.vocabulary(model, vocabulary_probe.resolve({}), lambda *a: None)
    sources = {"probe": ("the probe set (demo_shapes, 10 per cell, 360 images)", shapes.create()),
               "held-out": ("held-out (20 per cell, evaluation seed, 720 images)",
                            shapes.create(per_cell=20, seed=EVAL_SEED))}
    only = args.only.split(",")
    for key in args.sources.split(","):
        name, source = sources[key]
        if "labels" in only:
            print(f"\n### {name}\n")
            labelers(model, source, truth, vocabulary)
        if "polysemantic" in only:
            polysemantic(model, source, truth)
    if "audit" in only:
        audit(model, shapes, [int(s) for s in args.seeds.split(",") if s])


if __name__ == "__main__":
    main()
