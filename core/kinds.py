"""The plugin kinds: one interface per kind, so the CLI and the app can treat plugins generically.

Every plugin object has a ``name`` (unique within its kind), a ``description``, ``params`` (a
list of :class:`~mmneurons.params.Param`) and ``supports(model)``. Each kind has one method that
does the work and takes a ``progress`` callback. Subclassing these bases is optional (duck typing
works), but they document the contract and give the defaults.
"""

from __future__ import annotations

import abc
import os
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

from .params import Param, resolve_params

if TYPE_CHECKING:  # pragma: no cover
    from .images import ImageSource
    from .models import ClipModel

#: ``progress(done, total, message)``; plugins call it as work advances.
Progress = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str = "") -> None:
    """A progress callback that ignores everything."""


def plugin_params(plugin: Any, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``values`` typed and checked against ``plugin.params``: defaults filled, unknown names refused
    with the allowed ones listed, every error naming the plugin. The CLI and the app call this once,
    before a plugin's work method, so a plugin always receives typed values (``"2"`` arrives as 2)."""
    kind = str(getattr(plugin, "kind", "plugin")).replace("_", " ")
    return resolve_params(getattr(plugin, "params", ()), values, owner=f"{kind} '{getattr(plugin, 'name', '?')}'")


class PluginObject:
    """Fields and defaults shared by every plugin kind.

    ``result_types``: the :class:`~mmneurons.results.Result` classes this plugin's work returns
    besides the core ones (``FeatureVis``, ``AttributionMap``, ``ProbeResult``), so that
    :func:`~mmneurons.results.load_result` can read them back: it builds only declared types.
    ``provided_by``: set by the registry when it collects the object: the name of the plugin that
    provided it, for error messages and listings (a plugin does not set it).
    """

    kind: ClassVar[str] = "plugin"
    name: str = ""
    description: str = ""
    params: Sequence[Param] = ()
    result_types: tuple[type, ...] = ()
    provided_by: str = ""

    def supports(self, model: "ClipModel") -> bool:
        """Whether this plugin can work on ``model`` (the app hides plugins that say no)."""
        return True

    def resolve(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``values`` typed and checked against ``params`` (:func:`plugin_params`); the bases call it
        before the work, so a plugin's own code receives complete, typed values."""
        return plugin_params(self, values)

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name!r}>"


class ModelProvider(PluginObject):
    """Loads models from ids ``<provider name>:<spec>``, e.g. ``openclip:RN50x4@openai``."""

    kind = "model_provider"

    @abc.abstractmethod
    def list_models(self) -> list[str]:
        """Model ids (with the provider prefix) this provider can load; may be a partial list."""

    @abc.abstractmethod
    def load(self, spec: str, device: Any) -> "ClipModel":
        """Load the model named by ``spec`` (the id without ``provider:``) onto ``device``."""


class ImageSourceFactory(PluginObject):
    """Builds an :class:`~mmneurons.images.ImageSource` from parameter values."""

    kind = "image_source"

    @abc.abstractmethod
    def create(self, **values: Any) -> "ImageSource":
        """Build the source; ``values`` are already validated against ``params``."""


class Visualizer(PluginObject):
    """Renders feature visualizations for units (batched: one image per unit).

    ``targets`` says what ``visualize`` takes: ``"unit"`` (``layer4.0:17``), ``"direction"``
    (:class:`~mmneurons.units.Direction`) or ``"text"`` (a prompt).
    """

    kind = "visualizer"
    targets: tuple[str, ...] = ("unit",)

    def accepts(self, target_kind: str) -> bool:
        """Whether ``visualize`` takes targets of this kind."""
        return target_kind in self.targets

    @abc.abstractmethod
    def visualize(self, model: "ClipModel", units: Sequence, params: dict, progress: Progress = no_progress) -> list:
        """Return one ``FeatureVis`` per unit (or per unit and diversity sample)."""


class Attributor(PluginObject):
    """Attributes a target (Unit, Direction or zero-shot class) to input pixels."""

    kind = "attributor"

    @abc.abstractmethod
    def attribute(self, model: "ClipModel", images: Any, target: Any, params: dict,
                  progress: Progress = no_progress) -> list:
        """Return one ``AttributionMap`` per image."""

    @abc.abstractmethod
    def captum(self, model: "ClipModel", target: Any) -> Any:
        """Return the configured ``captum.attr.Attribution`` object for ``target``."""


#: what a probe's ``run`` can take as its target
PROBE_TARGETS = ("unit", "layer", "text", "class", "concepts")
#: what a probe reads: an image source (required), a word list (optional, the probe has a default), nothing
PROBE_SOURCES = ("images", "words", "none")


class Probe(PluginObject):
    """Analyses a unit or a layer over an image source or a word list.

    ``targets`` says what ``run`` accepts: ``"unit"`` (``layer4.0:17``), ``"layer"`` (``layer4.0``),
    ``"text"`` (a word or prompt), ``"class"`` (a zero-shot class or ``prompt:...`` target) or
    ``"concepts"`` (comma-separated concepts or groups, ``ring,circle``);
    ``source`` says what it reads (see :data:`PROBE_SOURCES`). The app uses both to offer each
    probe where it fits and to show an image-source picker only where one is needed.

    A probe implements :meth:`compute`; :meth:`run` (what the CLI, the app and the atlas call)
    resolves the parameters and parses the target first. A probe may override ``run`` instead.
    """

    kind = "probe"
    targets: tuple[str, ...] = ("unit",)
    source: str = "images"
    #: parameter values for running on a whole layer in an atlas build, or None: not an atlas stage.
    #: A probe that declares them (and takes a ``"layer"``) adds its per-unit table rows (rows with a
    #: :data:`~mmneurons.results.UNIT_COLUMN`) to every unit of an atlas.
    atlas: Mapping[str, Any] | None = None
    #: whether an atlas build that names no stages runs this one; False for a column too costly to
    #: build unasked (``mmneurons atlas build --with NAME`` still builds it)
    atlas_default: bool = True

    def accepts(self, target_kind: str) -> bool:
        """Whether ``run`` takes a target of this kind (one of :data:`PROBE_TARGETS`)."""
        return target_kind in self.targets

    def run(self, model: "ClipModel", target: Any, source: Any, params: Mapping[str, Any] | None = None,
            progress: Progress = no_progress) -> Any:
        """Return a result (a ``ProbeResult`` or one of ``result_types``)."""
        return self.compute(model, self.parse_target(model, target), source, self.resolve(params), progress)

    def run_layers(self, model: "ClipModel", layers: Sequence[str], source: Any,
                   params: Mapping[str, Any] | None = None, progress: Progress = no_progress) -> dict[str, Any]:
        """``{layer: result}`` of :meth:`run` on each of ``layers`` (the atlas runs a probe stage on
        all its layers this way). A probe that can serve several layers from one pass over its
        source overrides this."""
        return {layer: self.run(model, layer, source, params, progress) for layer in layers}

    def parse_target(self, model: "ClipModel", target: Any) -> Any:
        """The target as :meth:`compute` takes it: a validated :class:`~mmneurons.units.Unit` for
        ``layer:channel`` where units are accepted, a validated layer name where layers are, else
        the text itself (stripped)."""
        from .units import Unit, parse_unit_or_layer

        if "unit" in self.targets or "layer" in self.targets:
            parsed = parse_unit_or_layer(target) if "layer" in self.targets else Unit.parse(target)
            if isinstance(parsed, Unit):
                if "unit" not in self.targets:
                    raise ValueError(f"probe '{self.name}' takes a layer, not a unit: give e.g. '{parsed.layer}'")
                return parsed.validate(model)
            if "text" not in self.targets and "class" not in self.targets:
                model.layer_info(parsed)  # a clear error for an unknown layer
                return parsed
        return target.strip() if isinstance(target, str) else target

    def compute(self, model: "ClipModel", target: Any, source: Any, values: dict,
                progress: Progress = no_progress) -> Any:
        """The probe's own science on a parsed target and resolved ``values``."""
        raise NotImplementedError(f"probe '{self.name}' must define compute() (or override run())")


class SAESource(PluginObject):
    """Ships SAE files for models (its own or anyone's): each file is checked against the model it
    names and joins that model as the layer ``<layer>.sae`` (or ``<layer>.<source name>`` when the
    layer has one already) when the model loads."""

    kind = "sae_source"

    def files(self, model: "ClipModel") -> "Sequence[str | os.PathLike]":
        """The SAE files (:class:`mmneurons.sae.SAE`) this source has for ``model``; none by default."""
        return ()


class Renderer(PluginObject):
    """Draws results of one ``result_kind`` in the Streamlit app (UI plugins only)."""

    kind = "renderer"
    result_kind: str = ""

    @abc.abstractmethod
    def render(self, result: Any, st: Any) -> None:
        """Draw ``result`` with the streamlit module ``st``."""


#: hook name -> kind name, the order the CLI and docs list them in
HOOK_KINDS: dict[str, str] = {
    "mmneurons_model_providers": ModelProvider.kind,
    "mmneurons_image_sources": ImageSourceFactory.kind,
    "mmneurons_visualizers": Visualizer.kind,
    "mmneurons_attributors": Attributor.kind,
    "mmneurons_probes": Probe.kind,
    "mmneurons_renderers": Renderer.kind,
    "mmneurons_saes": SAESource.kind,
    "mmneurons_commands": "command",  # click commands: their ``name`` is the subcommand
}
