"""Neuron probes: the paper's analyses as plugins (one module per probe)."""

from mmneurons.hookspecs import hookimpl

from .dataset_examples import DatasetExamplesProbe
from .modality import ModalityProbe
from .neuron_search import NeuronSearchProbe
from .rendered_words import RenderedWordsProbe

PROBES = (DatasetExamplesProbe, RenderedWordsProbe, ModalityProbe, NeuronSearchProbe)


@hookimpl
def mmneurons_probes():
    return [cls() for cls in PROBES]
