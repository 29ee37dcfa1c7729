"""Neuron probes: the paper's analyses as plugins (one module per probe)."""


from .ablation import AblationProbe
from .activation_by_category import ActivationByCategoryProbe
from .association_audit import AssociationAuditProbe
from .concept_decomposition import ConceptDecompositionProbe
from .dataset_examples import DatasetExamplesProbe
from .modality import ModalityProbe
from .neuron_label import NeuronLabelProbe
from .neuron_search import NeuronSearchProbe
from .rendered_words import RenderedWordsProbe
from .typographic_attack import TypographicAttackProbe

PROBES = (DatasetExamplesProbe, RenderedWordsProbe, ModalityProbe, TypographicAttackProbe, NeuronSearchProbe,
          ActivationByCategoryProbe, NeuronLabelProbe, AblationProbe,
          ConceptDecompositionProbe, AssociationAuditProbe)
