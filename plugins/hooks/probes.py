"""The paper's analyses as probes."""

from mmneurons.hookspecs import hookimpl


@hookimpl
def mmneurons_probes():
    from mmneurons.plugins.probes import PROBES

    return [cls() for cls in PROBES]
