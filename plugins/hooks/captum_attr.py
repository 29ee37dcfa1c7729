"""Captum attributions, and the ``unit_contributions`` probe built on them."""

from mmneurons.hookspecs import hookimpl


@hookimpl
def mmneurons_attributors():
    from mmneurons.plugins.captum_attr import ATTRIBUTORS

    return [cls() for cls in ATTRIBUTORS]


@hookimpl
def mmneurons_probes():
    from mmneurons.plugins.captum_attr import UnitContributionsProbe

    return [UnitContributionsProbe()]
