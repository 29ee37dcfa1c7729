"""Sparse autoencoders on a layer: the ``mmneurons sae`` commands."""

from mmneurons.hookspecs import hookimpl


@hookimpl
def mmneurons_commands():
    from mmneurons.plugins.sae_commands import sae_cli

    return [sae_cli]
