"""Building an atlas: stages over a set of layers, each recording per-unit completion, so a build
killed at any moment continues where it stopped when it is started again.

Stages (``--with`` / ``--without`` name them):

- ``examples``: the top-k and bottom-k images of every unit of every layer, from one streaming pass
  over the source for all layers (resumable mid-pass), with each top image's activation map;
- ``vis``: a feature visualization per unit (a visualizer plugin, ``channel`` by default; with
  ``diversity`` its further images are kept as ``samples``), in batches that commit one by one; a
  resumed build renders the same batches, so it writes the same bytes;
- one stage per probe that declares ``atlas`` parameters (built in: ``rendered_words``,
  ``neuron_label``, ``modality``): the probe runs on all the layers at once (``Probe.run_layers``;
  the built-in three make one pass over their images or words for all of them) and its per-unit
  table rows become the unit's values. A probe whose source lacks what it needs (``modality`` without concept x
  modality images) is recorded as skipped, with the reason. A probe whose column is costly
  (``ablation``: one pass over the images per unit) says ``atlas_default = False`` and is built
  only when named (``--with ablation``).

Files are written before the rows that name them; every write of rows is one transaction.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Sequence

import numpy as np

from .. import __version__
from ..errors import ImageLoadError
from ..kinds import Progress, no_progress, plugin_params
from ..results import UNIT_COLUMN
from . import store
from .store import AtlasError, dumps, transaction

if TYPE_CHECKING:  # pragma: no cover
    from ..images import ImageSource
    from ..scan import ScanOptions
    from ..models import ClipModel
    from ..registry import PluginRegistry

#: bump a stage's version when what it stores changes; stored values record it
STAGE_VERSIONS = {"examples": 1, "vis": 1, "path": 1}
CORE_STAGES = ("examples", "vis", "path")
#: reference images of the path check (a seeded sample of the source)
PATH_REFERENCE = 64
SCAN_CHECKPOINT = "scan.partial.pt"

#: ``stage_progress(name) -> context manager yielding a Progress callback``
StageProgress = Callable[[str], ContextManager[Progress]]


@contextmanager
def _silent(name: str) -> Iterator[Progress]:
    yield no_progress


@dataclass
class BuildOptions:
    """What to build. ``probe_params`` adds parameters per probe stage (over its ``atlas`` ones)."""

    layers: Sequence[str]
    stages: Sequence[str] | None = None           # None: every available stage
    without: Sequence[str] = ()
    k: int = 8
    visualizer: str = "channel"
    vis_params: dict = field(default_factory=lambda: {"steps": 256})
    vis_batch: int = 32
    probe_params: dict = field(default_factory=dict)
    batch_size: int = 64
    checkpoint_every: int = 20                   # scan batches between checkpoints of the examples pass
    num_workers: int | None = None               # image loader processes of the scan (None: auto)
    scan: "ScanOptions | None" = None            # precision and engine of the examples scan (None: local, auto)

    def scan_options(self) -> "ScanOptions":
        from ..scan import ScanOptions

        if self.scan is not None:
            return self.scan
        return ScanOptions(batch_size=self.batch_size, num_workers=self.num_workers)


def _local_precision(model: "ClipModel", options: "ScanOptions", scanned: str) -> str:
    """The precision this process computes the examples' maps in: the scan's, unless the scan ran
    on Ray actors with a precision this device lacks (fp16 on a GPU, maps on a CPU)."""
    if options.engine == "local" or scanned != "fp16" or model.device.type == "cuda":
        return scanned
    return "auto"


def weights_hash(model: "ClipModel") -> str:
    """The sha256 the provider states (the demo's manifest) or one of every parameter and buffer."""
    if model.meta.get("sha256"):
        return str(model.meta["sha256"])
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def atlas_probes(registry: "PluginRegistry", model: "ClipModel") -> dict[str, Any]:
    """The probes that can add a column to an atlas: they take a layer and declare ``atlas`` parameters."""
    return {p.name: p for p in registry.probes()
            if getattr(p, "atlas", None) is not None and p.accepts("layer") and p.supports(model)}


@contextmanager
def build_lock(folder: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the atlas's build lock, or refuse at once (``wait``: block until the other build ends):
    two builds never write one atlas. The lock is per process: threads of one process that build
    the same atlas must take turns themselves (the app's do, under the model's lock)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / store.LOCK
    handle = open(path, "a+")
    try:
        try:
            # a POSIX record lock: held by this process alone (image loader processes forked from it
            # do not inherit it, so a killed build's orphaned loaders never block the next build)
            fcntl.lockf(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise AtlasError(f"another build is writing {folder} ({holder}); wait for it to finish (or give "
                             f"--wait), or build into another --atlas") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock, as the death of the process does


class Builder:
    """One build of one atlas (use :func:`build_atlas`)."""

    def __init__(self, model: "ClipModel", folder: Path, source: "ImageSource", source_desc: str,
                 options: BuildOptions, registry: "PluginRegistry", stage_progress: StageProgress) -> None:
        self.model, self.folder, self.source, self.source_desc = model, folder, source, source_desc
        self.options, self.registry, self.stage_progress = options, registry, stage_progress
        self.conn = store.connect(folder, write=True)
        self.build_id = 0

    # -- identity ------------------------------------------------------------------------------
    def check_identity(self) -> None:
        """An atlas holds one model over one source; a build of another is refused, not mixed in."""
        identity = {"model_id": self.model.model_id, "weights": weights_hash(self.model), "source": self.source_desc}
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        if row is None:
            with transaction(self.conn):
                self.conn.execute("INSERT INTO meta (key, value) VALUES ('identity', ?)", (dumps(identity),))
                self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('created', ?)",
                                  (str(store.now()),))
            return
        stored = json.loads(row[0])
        if stored != identity:
            diff = ", ".join(f"{k}: {stored.get(k)!r} here, {v!r} asked" for k, v in identity.items()
                             if stored.get(k) != v)
            raise AtlasError(f"{self.folder} is an atlas of another model or source ({diff}); build into another "
                             f"--atlas")

    def add_layers(self) -> None:
        rows = []
        for name in self.options.layers:
            c, h, w = self.model.layer_info(name).shape
            rows.append((name, c, h, w))
        with transaction(self.conn):
            self.conn.executemany("INSERT OR IGNORE INTO layers (name, channels, height, width) VALUES (?, ?, ?, ?)",
                                  rows)

    # -- stage bookkeeping ---------------------------------------------------------------------
    def stage_state(self, layer: str, stage: str, params: dict, version: str) -> str | None:
        """``done``, ``skipped`` or ``partial`` for a stage already started with these parameters; None
        for a new stage. A stage stored with other parameters or code is cleared, to be built again."""
        row = self.conn.execute("SELECT state, params, code_version FROM stages WHERE layer = ? AND stage = ?",
                                (layer, stage)).fetchone()
        if row is None:
            return None
        if row[1] != dumps(params) or row[2] != version:
            with transaction(self.conn):
                self.clear_stage(layer, stage)
            return None
        return row[0]

    def clear_stage(self, layer: str, stage: str) -> None:
        self.conn.execute("DELETE FROM unit_values WHERE layer = ? AND stage = ?", (layer, stage))
        self.conn.execute("DELETE FROM unit_text WHERE layer = ? AND stage = ?", (layer, stage))
        self.conn.execute("DELETE FROM stages WHERE layer = ? AND stage = ?", (layer, stage))

    def mark(self, layer: str, stage: str, state: str, params: dict, version: str, note: str = "") -> None:
        self.conn.execute("INSERT OR REPLACE INTO stages (layer, stage, state, params, code_version, build, finished, "
                          "note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (layer, stage, state, dumps(params), version, self.build_id,
                           store.now() if state in ("done", "skipped") else None, note))

    def write_units(self, layer: str, stage: str, values: dict[int, dict], files: list[tuple[str, str, int]]) -> None:
        """Rows of one batch, in the transaction the caller holds (files already on disk). The words of
        probe stages (labels, top words) go to the search index; the core stages hold none."""
        store.record_files(self.conn, files)
        self.conn.executemany("INSERT OR REPLACE INTO unit_values (layer, channel, stage, data) VALUES (?, ?, ?, ?)",
                              [(layer, c, stage, dumps(v)) for c, v in values.items()])
        self.conn.executemany("DELETE FROM unit_text WHERE layer = ? AND channel = ? AND stage = ?",
                              [(layer, c, stage) for c in values])
        if stage not in CORE_STAGES:
            self.conn.executemany("INSERT INTO unit_text (layer, channel, stage, text) VALUES (?, ?, ?, ?)",
                                  [(layer, c, stage, store.search_text(v)) for c, v in values.items()])

    def done_units(self, layer: str, stage: str) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT channel FROM unit_values WHERE layer = ? AND stage = ?",
                                                (layer, stage))}

    def plugin_version(self, obj: Any) -> str:
        """The code version of a plugin object: its plugin's name and distribution version."""
        plugin = getattr(obj, "provided_by", "") or "?"
        info = next((i for i in self.registry.plugins() if i.name == plugin), None)
        return f"{plugin} {getattr(info, 'version', None) or __version__}"

    def put(self, data: bytes, suffix: str, files: list) -> str:
        digest = store.put_file(self.folder, data, suffix)
        files.append((digest, suffix, len(data)))
        return digest

    # -- the build -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        store.remove_partial_files(self.folder)
        self.check_identity()
        self.add_layers()
        config = {"layers": list(self.options.layers), "k": self.options.k, "visualizer": self.options.visualizer,
                  "vis_params": self.options.vis_params, "source": self.source_desc}
        with transaction(self.conn):
            # we hold the lock: a build still "running" was killed outright (SIGKILL, power loss)
            self.conn.execute("UPDATE builds SET state = 'killed' WHERE state = 'running'")
            cur = self.conn.execute("INSERT INTO builds (started, state, config, pid) VALUES (?, 'running', ?, ?)",
                                    (store.now(), dumps(config), os.getpid()))
            self.build_id = cur.lastrowid
        report: dict[str, Any] = {}
        try:
            stages = self.plan()
            for stage in stages:
                report[stage] = getattr(self, f"stage_{stage}", None)() if stage in CORE_STAGES \
                    else self.stage_probe(stage)
        except BaseException as exc:
            try:
                with transaction(self.conn):
                    self.conn.execute("UPDATE builds SET state = ?, finished = ?, error = ? WHERE id = ?",
                                      ("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                                       store.now(), f"{type(exc).__name__}: {exc}", self.build_id))
            except sqlite3.Error:
                pass  # a full disk takes the record too: the next build finds it "running" and says "killed"
            raise
        with transaction(self.conn):
            self.conn.execute("UPDATE builds SET state = 'done', finished = ? WHERE id = ?",
                              (store.now(), self.build_id))
        return report

    def plan(self) -> list[str]:
        probes = atlas_probes(self.registry, self.model)
        known = list(CORE_STAGES) + sorted(probes)
        asked = list(self.options.stages) if self.options.stages else [
            s for s in known if s in CORE_STAGES or getattr(probes[s], "atlas_default", True)]
        unknown = [s for s in list(asked) + list(self.options.without) if s not in known]
        if unknown:
            raise AtlasError(f"unknown atlas stage(s): {', '.join(unknown)}; stages: {', '.join(known)}")
        misplaced = [s for s in self.options.probe_params if s not in probes]
        if misplaced:
            raise AtlasError(f"parameters for {', '.join(misplaced)}: stage parameters go to vis or a probe stage "
                             f"({', '.join(['vis', *sorted(probes)])}); the examples stage takes --k and --batch-size")
        return [s for s in known if s in asked and s not in self.options.without]

    def stage_examples(self) -> dict:
        from ..activations import scan_layers_top_k
        from ..images import to_pil
        from ..results import image_to_png_bytes
        from ..engines import engine_precision
        from ..scan import ScanTower

        layers, k, scan_options = list(self.options.layers), self.options.k, self.options.scan_options()
        precision = engine_precision(self.model, scan_options)
        params = {"k": k, "reduce": "mean", "precision": precision}
        version = f"{__version__}/{STAGE_VERSIONS['examples']}"
        todo = [layer for layer in layers if self.stage_state(layer, "examples", params, version) != "done"]
        if not todo:
            return {"layers": 0}
        with self.stage_progress(f"examples: scan of {len(self.source)} images") as progress:
            scans = scan_layers_top_k(self.model, self.source, todo, k, bottom=True, options=scan_options,
                                      progress=progress, checkpoint=str(self.folder / SCAN_CHECKPOINT),
                                      checkpoint_every=self.options.checkpoint_every)
        scan = scans[todo[0]]
        used = sorted({int(i) for s in scans.values() for i in np.concatenate([s.top_indices.ravel(),
                                                                                s.bottom_indices.ravel()])})
        files: list = []
        thumbs: dict[int, str] = {}
        with self.stage_progress(f"examples: {len(used)} images and maps") as progress:
            maps = {layer: np.zeros(scans[layer].top_indices.shape + self.model.layer_info(layer).shape[1:],
                                    np.float16) for layer in todo}
            where = {layer: {} for layer in todo}  # image -> [(channel, rank)] among the top images
            for layer in todo:
                for c, row in enumerate(scans[layer].top_indices):
                    for rank, i in enumerate(row):
                        where[layer].setdefault(int(i), []).append((c, rank))
            import torch

            tower = ScanTower(self.model, todo, _local_precision(self.model, scan_options, precision))
            for start in range(0, len(used), self.options.batch_size):
                chunk = used[start:start + self.options.batch_size]
                pixels = torch.stack([self.model.pixels(self.source.load(i)) for i in chunk])
                for i, px in zip(chunk, pixels):
                    thumbs[i] = self.put(image_to_png_bytes(to_pil(px)), ".png", files)
                acts, _ = tower.forward(pixels)
                for layer in todo:
                    grid = acts[layer].float().clamp(min=0).cpu().numpy()
                    for j, i in enumerate(chunk):
                        for c, rank in where[layer].get(i, ()):
                            maps[layer][c, rank] = grid[j, c]
                progress(min(start + len(chunk), len(used)), len(used), "example images")
        for layer in todo:
            s, values = scans[layer], {}
            for c in range(s.top_indices.shape[0]):
                buf = io.BytesIO()
                np.savez_compressed(buf, maps=maps[layer][c])
                map_hash = self.put(buf.getvalue(), ".npz", files)
                values[c] = {
                    "top": [{"image": s.image_ids[i], "category": s.categories[i], "activation": float(v),
                             "file": thumbs[int(i)]} for i, v in zip(s.top_indices[c], s.top_values[c])],
                    "bottom": [{"image": s.image_ids[i], "category": s.categories[i], "activation": float(v),
                                "file": thumbs[int(i)]} for i, v in zip(s.bottom_indices[c], s.bottom_values[c])],
                    "maps": map_hash, "images": s.n_images,
                    "max": float(s.top_values[c][0]) if len(s.top_values[c]) else None}
            with transaction(self.conn):
                self.write_units(layer, "examples", values, files)
                self.mark(layer, "examples", "done", params, version,
                          note=f"{scan.n_images} images, {len(scan.skipped)} skipped")
        return {"layers": len(todo), "images": scan.n_images, "unreadable": len(scan.skipped)}

    def stage_vis(self) -> dict:
        from ..results import image_to_png_bytes
        from ..units import Unit

        visualizer = self.registry.get("mmneurons_visualizers", self.options.visualizer)
        params = plugin_params(visualizer, self.options.vis_params)
        params = {"visualizer": visualizer.name, **params}
        version = f"{__version__}/{STAGE_VERSIONS['vis']}"
        rendered = 0
        for layer in self.options.layers:
            if self.stage_state(layer, "vis", params, version) == "done":
                continue
            with transaction(self.conn):
                self.mark(layer, "vis", "partial", params, version)
            channels = self.model.layer_info(layer).channels
            todo = [c for c in range(channels) if c not in self.done_units(layer, "vis")]
            with self.stage_progress(f"vis: {layer}") as progress:
                progress(channels - len(todo), channels, "units")
                for start in range(0, len(todo), self.options.vis_batch):
                    batch = todo[start:start + self.options.vis_batch]
                    results = visualizer.visualize(self.model, [str(Unit(layer, c)) for c in batch],
                                                   {k: v for k, v in params.items() if k != "visualizer"})
                    per_unit: dict[str, list] = {}
                    for res in results:  # diversity gives several images per unit: the first, then samples
                        per_unit.setdefault(res.of or res.target, []).append(res)
                    files: list = []
                    values = {}
                    for c in batch:
                        res, *others = per_unit[str(Unit(layer, c))]
                        values[c] = {"file": self.put(image_to_png_bytes(res.image), ".png", files),
                                     "activation": res.activation, "gray": res.activation_gray,
                                     "noise": res.activation_noise, "warnings": list(res.warnings)}
                        if others:
                            values[c]["samples"] = [self.put(image_to_png_bytes(o.image), ".png", files)
                                                    for o in others]
                    with transaction(self.conn):
                        self.write_units(layer, "vis", values, files)
                    rendered += len(batch)
                    progress(channels - len(todo) + start + len(batch), channels, "units")
            with transaction(self.conn):
                self.mark(layer, "vis", "done", params, version)
        return {"units": rendered}

    def stage_path(self) -> dict:
        import torch
        from PIL import Image

        from ..analysis.render_check import PathBaseline, path_layers, reference_pixels
        from ..images import to_pixels

        version = f"{__version__}/{STAGE_VERSIONS['path']}"
        size = self.model.image_size
        scored = 0
        for layer in self.options.layers:
            # the scores belong to the renders and examples stored now: other ones, other scores
            made_from = {stage: [params, state] for stage, params, state in self.conn.execute(
                "SELECT stage, params, state FROM stages WHERE layer = ? AND stage IN ('vis', 'examples')", (layer,))}
            params = {"reference": PATH_REFERENCE, "seed": 0, "from": made_from}
            if self.stage_state(layer, "path", params, version) == "done":
                continue
            try:
                layers = path_layers(self.model, layer)
            except ValueError as exc:
                layers, why = [], str(exc)
            else:
                why = f"no layer before {layer}"
            if not layers:
                with transaction(self.conn):
                    self.mark(layer, "path", "skipped", params, version, note=why)
                continue
            stored = {stage: dict(self.conn.execute(
                "SELECT channel, data FROM unit_values WHERE layer = ? AND stage = ?", (layer, stage)).fetchall())
                for stage in ("vis", "examples")}
            done = self.done_units(layer, "path")
            todo = [c for c in sorted(set(stored["vis"]) & set(stored["examples"])) if c not in done]
            with transaction(self.conn):
                self.mark(layer, "path", "partial", params, version)
            reference = reference_pixels(self.model, self.source, PATH_REFERENCE, params["seed"])
            if len(reference) < 2:
                with transaction(self.conn):
                    self.mark(layer, "path", "skipped", params, version,
                              note=f"{len(reference)} readable reference image(s); the check needs 2")
                continue
            baseline = PathBaseline(self.model, reference, layers)

            def pixels(digest: str) -> torch.Tensor:
                return to_pixels(Image.open(store.file_path(self.folder, digest, ".png")), size)

            with self.stage_progress(f"path: {layer}") as progress:
                for start in range(0, len(todo), 64):
                    values = {}
                    for c in todo[start:start + 64]:
                        vis, examples = json.loads(stored["vis"][c]), json.loads(stored["examples"][c])
                        top = [row["file"] for row in examples.get("top") or [] if row.get("file")]
                        if top:
                            [score] = baseline.scores(self.model, pixels(vis["file"])[None],
                                                      torch.stack([pixels(d) for d in top]))
                            values[c] = {"score": score.score, "layers": score.per_layer, "warning": score.warning}
                    with transaction(self.conn):
                        self.write_units(layer, "path", values, [])
                    scored += len(values)
                    progress(min(start + 64, len(todo)), len(todo), "units")
            with transaction(self.conn):
                self.mark(layer, "path", "done", params, version,
                          note=f"{len(reference)} reference images; layers {', '.join(layers)}")
        return {"units": scored}

    def stage_probe(self, name: str) -> dict:
        """One probe on every layer not done yet, in one call (a probe may serve them from one pass)."""
        probe = self.registry.get("mmneurons_probes", name)
        params = plugin_params(probe, {**dict(probe.atlas), **self.options.probe_params.get(name, {})})
        version = self.plugin_version(probe)
        source = self.source if probe.source == "images" else None
        todo = [layer for layer in self.options.layers
                if self.stage_state(layer, name, params, version) not in ("done", "skipped")]
        if not todo:
            return {"layers": 0}
        with self.stage_progress(f"{name}: {', '.join(todo)}") as progress:
            try:
                results = probe.run_layers(self.model, todo, source, params, progress)
            except (ImageLoadError, ValueError) as exc:  # what this source cannot give: said, not fatal
                with transaction(self.conn):
                    for layer in todo:
                        self.mark(layer, name, "skipped", params, version, note=str(exc))
                return {"layers": 0, "skipped": dict.fromkeys(todo, str(exc))}
        for layer in todo:
            result = results[layer]
            values: dict[int, dict] = {}
            for table, rows in (getattr(result, "tables", None) or {}).items():
                for row in rows if isinstance(rows, list) else ():
                    if isinstance(row, dict) and UNIT_COLUMN in row:
                        unit_layer, _, channel = str(row[UNIT_COLUMN]).rpartition(":")
                        if unit_layer == layer and channel.isdigit():
                            values.setdefault(int(channel), {})[table] = {
                                k: v for k, v in row.items() if k != UNIT_COLUMN}
            with transaction(self.conn):
                self.write_units(layer, name, values, [])
                self.mark(layer, name, "done", params, version,
                          note="; ".join(getattr(result, "warnings", []) or [])[:500])
        return {"layers": len(todo)}


def build_atlas(model: "ClipModel", folder: "str | os.PathLike", source: "ImageSource", source_desc: str,
                options: BuildOptions, *, registry: "PluginRegistry | None" = None,
                stage_progress: StageProgress = _silent, wait: bool = False) -> dict[str, Any]:
    """Build (or continue building) the atlas in ``folder``; returns what each stage did. Another
    build of it in progress: refused at once, or with ``wait`` awaited (then this one continues it)."""
    from ..registry import get_registry

    folder = Path(folder)
    store.check_folder(folder)
    with build_lock(folder, wait=wait):
        builder = Builder(model, folder, source, source_desc, options, registry or get_registry(), stage_progress)
        try:
            return builder.run()
        finally:
            builder.conn.close()
