"""``mmneurons atlas export PATH --html DIR``: a static, Microscope-like site that opens from disk.

``index.html`` lists the layers; ``<layer>/index.html`` shows every unit's visualization with its
label and scores in a table that sorts on a click and filters as you type (a few lines of inline
JavaScript, no server, no external files); ``<layer>/<channel>.html`` is one unit: visualization, top and bottom dataset
examples, top rendered words, label, modality chart (inline SVG). Images are copied under
``files/`` by their content hash, so every link is relative and the folder can be zipped and shared.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path
from typing import Any

from ..kinds import Progress
from .read import Atlas, AtlasLayer, AtlasUnit

MARKER = ".mmneurons-export"

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}a{color:#1d4ed8;text-decoration:none}
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}
th{cursor:pointer;background:#f3f4f6}img.vis{width:96px;height:96px;image-rendering:auto}
.examples img{width:96px;height:96px;margin:2px}.examples figure{display:inline-block;margin:3px;font-size:11px}
.big{width:224px;height:224px}.note{color:#666;font-size:12px}.warn{color:#a15c00;font-size:12px}nav{margin-bottom:1em}"""

FILTER_SCRIPT = """const q=document.getElementById('q');q.addEventListener('input',()=>{const t=q.value.toLowerCase();
let n=0;document.querySelectorAll('tbody tr').forEach(r=>{const show=!t||r.textContent.toLowerCase().includes(t);
r.style.display=show?'':'none';n+=show});document.getElementById('shown').textContent=n});"""

SORT_SCRIPT = """document.querySelectorAll('th').forEach((th,i)=>th.addEventListener('click',()=>{
const body=th.closest('table').tBodies[0];const rows=[...body.rows];const dir=th.dataset.dir==='1'?-1:1;
th.dataset.dir=dir===1?'1':'0';rows.sort((a,b)=>{const x=a.cells[i].dataset.v??a.cells[i].textContent,
y=b.cells[i].dataset.v??b.cells[i].textContent;const nx=parseFloat(x),ny=parseFloat(y);
if(!isNaN(nx)&&!isNaN(ny))return (nx-ny)*dir;if(isNaN(nx)!==isNaN(ny))return isNaN(nx)?1:-1;
return x.localeCompare(y)*dir});rows.forEach(r=>body.appendChild(r))}));"""

#: the layer index's columns: (heading, path into a unit's values)
COLUMNS = (("label", ("neuron_label", "labels", "label")),
           ("label score", ("neuron_label", "labels", "score")),
           ("top word", ("rendered_words", "units", "best")),
           ("modality concept", ("modality", "ranking", "concept")),
           ("multimodality", ("modality", "ranking", "score")),
           ("max activation", ("examples", "max")))


def dig(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def page(title: str, body: str, script: str = "") -> str:
    tail = f"<script>{script}</script>" if script else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}{tail}</body></html>\n")


def cell(value: Any) -> str:
    if value is None:
        return "<td data-v=''></td>"
    if isinstance(value, float):
        return f"<td data-v='{value!r}'>{value:.3g}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def modality_svg(profile: dict) -> str:
    """Grouped bars: the unit's mean activation per concept (groups) and modality (bars)."""
    concepts, modalities, means = profile["concepts"], profile["modalities"], profile["means"]
    colors = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6")
    top = max((v for row in means for v in row if v is not None), default=0.0) or 1.0
    bar, gap, height = 8, 10, 120
    width = len(concepts) * (len(modalities) * bar + gap) + 20
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 70}' role='img'>"]
    for k, concept in enumerate(concepts):
        x0 = 10 + k * (len(modalities) * bar + gap)
        for m, row in enumerate(means):
            v = max(row[k] or 0.0, 0.0)
            h = v / top * height
            parts.append(f"<rect x='{x0 + m * bar}' y='{height - h:.1f}' width='{bar - 1}' height='{h:.1f}' "
                         f"fill='{colors[m % len(colors)]}'><title>{html.escape(concept)}, "
                         f"{html.escape(modalities[m])}: {row[k]:.3g}</title></rect>")
        parts.append(f"<text x='{x0}' y='{height + 12}' font-size='10' transform='rotate(40 {x0} {height + 12})'>"
                     f"{html.escape(concept)}</text>")
    parts.append("</svg>")
    legend = " ".join(f"<span style='color:{colors[m % len(colors)]}'>&#9632; {html.escape(mod)}</span>"
                      for m, mod in enumerate(modalities))
    return "".join(parts) + f"<div class='note'>{legend}</div>"


class Exporter:
    def __init__(self, book: Atlas, out: Path) -> None:
        self.book, self.out = book, out

    def file(self, digest: str | None, depth: int) -> str:
        """Copy a stored file into the site (once) and return its path relative to a page ``depth``
        folders down."""
        if not digest:
            return ""
        source = self.book.file(digest)
        target = self.out / "files" / digest[:2] / source.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return "../" * depth + f"files/{digest[:2]}/{source.name}"

    def index(self) -> Path:
        ident = self.book.identity
        rows = "".join(f"<li><a href='{slug(layer.name)}/index.html'>{html.escape(layer.name)}</a> "
                       f"({layer.channels} units)</li>" for layer in self.book.layers())
        body = (f"<h1>{html.escape(ident.get('model_id', 'atlas'))}</h1><p class='note'>weights "
                f"{html.escape(str(ident.get('weights', ''))[:12])}, dataset examples from "
                f"{html.escape(str(ident.get('source', '')))}</p><ul>{rows}</ul>")
        path = self.out / "index.html"
        path.write_text(page(f"{ident.get('model_id', 'atlas')} atlas", body))
        return path

    def layer(self, layer: AtlasLayer, units: list[AtlasUnit]) -> None:
        folder = self.out / slug(layer.name)
        folder.mkdir(parents=True, exist_ok=True)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ("unit", "visualization", *(c[0] for c in COLUMNS)))
        rows = []
        for unit in units:
            vis = self.file(dig(unit.values, ("vis", "file")), 1)
            image = f"<img class='vis' src='{vis}' alt='{unit.name}'>" if vis else ""
            rows.append(f"<tr><td data-v='{unit.channel}'><a href='{unit.channel}.html'>{unit.channel}</a></td>"
                        f"<td><a href='{unit.channel}.html'>{image}</a></td>"
                        + "".join(cell(dig(unit.values, path)) for _, path in COLUMNS) + "</tr>")
        body = (f"<nav><a href='../index.html'>atlas</a></nav><h1>{html.escape(layer.name)}</h1>"
                f"<p class='note'><span id='shown'>{layer.channels}</span> of {layer.channels} units; click a "
                f"heading to sort; <input id='q' placeholder='filter: label, word, concept ...'></p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        (folder / "index.html").write_text(page(layer.name, body, SORT_SCRIPT + FILTER_SCRIPT))

    def unit(self, layer: AtlasLayer, unit: AtlasUnit) -> None:
        v = unit.values
        parts = [f"<nav><a href='../index.html'>atlas</a> / <a href='index.html'>{html.escape(layer.name)}</a>"
                 + (f" | <a href='{unit.channel - 1}.html'>previous</a>" if unit.channel > 0 else "")
                 + (f" | <a href='{unit.channel + 1}.html'>next</a>" if unit.channel + 1 < layer.channels else "")
                 + f"</nav><h1>{html.escape(unit.name)}</h1>"]
        if dig(v, ("vis", "file")):
            parts.append(f"<h2>Feature visualization</h2><img class='big' src='{self.file(v['vis']['file'], 1)}' "
                         f"alt='visualization'><p class='note'>activation {v['vis'].get('activation') or 0:.3g} "
                         f"(gray {v['vis'].get('gray') or 0:.3g}, noise {v['vis'].get('noise') or 0:.3g})</p>")
            path = v.get("path")
            if path:
                from ..analysis.render_check import PATH_HELP

                warn = f"<p class='warn'>{html.escape(path['warning'])}</p>" if path.get("warning") else ""
                parts.append(f"<p class='note'>path check {path['score']:.2f}: {html.escape(PATH_HELP)}</p>{warn}")
            samples = "".join(f"<img src='{self.file(d, 1)}' alt='diversity sample'>"
                              for d in v["vis"].get("samples") or [])
            if samples:
                parts.append(f"<h3>Diversity samples</h3><div class='examples'>{samples}</div>")
        label = dig(v, ("neuron_label", "labels"))
        if label:
            runners = html.escape(", ".join(label.get("runners_up") or []) or str(label.get("runner_up", "")))
            further = [x for x in str(label.get("labels") or "").split(", ") if x and x != label.get("label")]
            also = f" (also {html.escape(', '.join(further))})" if further else ""
            parts.append(f"<h2>Label</h2><p><b>{html.escape(str(label.get('label')))}</b>{also} (confidence "
                         f"{label.get('confidence') or 0:.3g}, score {label.get('score') or 0:.3g}; runners-up "
                         f"{runners})</p>")
            if label.get("evidence"):
                parts.append("<p class='note'>evidence images: "
                             f"{html.escape(', '.join(map(str, label['evidence'])))}</p>")
        words = dig(v, ("rendered_words", "units"))
        if words:
            parts.append(f"<h2>Top rendered words</h2><p>{html.escape(str(words.get('words', '')))}</p>")
        for side in ("top", "bottom"):
            examples = dig(v, ("examples", side))
            if examples:
                figures = "".join(f"<figure><img src='{self.file(e['file'], 1)}' alt='{html.escape(e['image'])}'>"
                                  f"<figcaption>{html.escape(str(e.get('category') or ''))} "
                                  f"{e['activation']:.3g}</figcaption></figure>" for e in examples)
                parts.append(f"<h2>{'Top' if side == 'top' else 'Bottom'} dataset examples</h2>"
                             f"<div class='examples'>{figures}</div>")
        ranking = dig(v, ("modality", "ranking"))
        if ranking and ranking.get("profile"):
            score = ranking.get("score")
            parts.append(f"<h2>Modality</h2><p>top concept <b>{html.escape(str(ranking.get('concept')))}</b>, "
                         f"multimodality {'-' if score is None else f'{score:.3g}'}"
                         f"{' (multimodal)' if ranking.get('multimodal') else ''}</p>"
                         + modality_svg(ranking["profile"]))
        built = "; ".join(f"{name}: {info.state}, {info.code_version}" for name, info in unit.stages.items())
        parts.append(f"<p class='note'>built: {html.escape(built)}</p>")
        (self.out / slug(layer.name) / f"{unit.channel}.html").write_text(page(unit.name, "".join(parts)))


def check_target(out: Path) -> None:
    """Export into a new or empty folder, or over an earlier export; never into a folder of other files."""
    if out.exists() and not out.is_dir():
        raise OSError(f"{out} is a file; --html names a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise OSError(f"{out} holds other files; give an empty or new folder (or an earlier export)")


def export_html(path: "str | Path", out: "str | Path", *, progress_bar: Any = None) -> Path:
    """Write the site; returns the path of its ``index.html``."""
    from contextlib import nullcontext

    out = Path(out)
    check_target(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by mmneurons atlas export\n")
    with Atlas.open(path) as book:
        exporter = Exporter(book, out)
        for layer in book.layers():
            units = [book.unit(f"{layer.name}:{c}") for c in range(layer.channels)]
            exporter.layer(layer, units)
            with (progress_bar(f"export {layer.name}") if progress_bar else nullcontext(None)) as progress:
                bar: Progress | None = progress
                for i, unit in enumerate(units):
                    exporter.unit(layer, unit)
                    if bar:
                        bar(i + 1, len(units), "pages")
        return exporter.index()
