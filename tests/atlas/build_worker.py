"""A small atlas build in a process of its own, for tests that kill it with SIGKILL. Each build
writes ``STAGE name done total`` lines (flushed) to a log, so the test knows where it is.

    python tests/atlas/build_worker.py FOLDER LOG [--slow]     one build
    python tests/atlas/build_worker.py --serve                 builds on request, forked

``--serve`` imports torch and open_clip once (seconds), then for each line ``FOLDER LOG [--slow]``
on stdin forks a child that builds (printing ``PID n`` and, when it ends, ``EXIT n code``). The
fork happens before any tensor is made, so the child starts with no thread pool to inherit.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

os.environ["MMNEURONS_LOAD_ENTRYPOINTS"] = "0"
os.environ["MMNEURONS_OFFLINE"] = "1"

import open_clip  # noqa: E402,F401  - imported once by the server, before it forks
import torch  # noqa: E402

from mmneurons.atlas import BuildOptions, build_atlas  # noqa: E402
from mmneurons.registry import get_registry  # noqa: E402
from mmneurons.testing import tiny_clip  # noqa: E402

LAYERS = ("layer1.0", "layer2.0")


def options(slow: bool = False) -> BuildOptions:
    """The build every atlas test compares against (``slow``: long visualizations, to be caught running)."""
    return BuildOptions(layers=LAYERS, k=3, vis_params={"steps": 400 if slow else 4}, vis_batch=16, batch_size=8,
                        checkpoint_every=1, num_workers=0,
                        probe_params={"rendered_words": {"n_words": 200}, "neuron_label": {"n_words": 300}})


def source():
    return get_registry().get("mmneurons_image_sources", "demo_shapes").create(per_cell=2, size=64)


def build(folder: str, log: str, slow: bool) -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    with open(log, "a", buffering=1) as out:
        @contextmanager
        def printing(stage: str):
            name = stage.split(":")[0] + ("-maps" if stage.endswith("maps") else "")
            out.write(f"STAGE {name} start\n")
            yield lambda done, total, message="": out.write(f"STAGE {name} {done} {total}\n")

        images = source()
        build_atlas(tiny_clip("resnet"), folder, images, images.describe(), options(slow), stage_progress=printing)
        out.write("DONE\n")


def serve() -> None:
    get_registry().probes()  # plugins loaded before the fork
    print("READY", flush=True)
    for line in sys.stdin:
        folder, log, *flags = line.split()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                build(folder, log, "--slow" in flags)
            except BaseException as exc:  # noqa: BLE001 - reported to the test through the log
                with open(log, "a") as out:
                    out.write(f"ERROR {type(exc).__name__}: {exc}\n")
                code = 1
            os._exit(code)
        print(f"PID {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"EXIT {pid} {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve()
    else:
        build(sys.argv[1], sys.argv[2], "--slow" in sys.argv)
