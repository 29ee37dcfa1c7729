"""Page defaults for a plugin's parameters come from what the plugin declares, not its names."""

from __future__ import annotations

from types import SimpleNamespace

from PIL import Image

from mmneurons.images import ListSource
from mmneurons.params import Param
from mmneurons.plugins.ui.widgets import context_defaults


def test_declared_parameters_get_the_sources_categories():
    source = ListSource([Image.new("RGB", (8, 8))] * 3, categories=["star", "moon", "star"])
    plugin = SimpleNamespace(params=(Param("classes", "str", default_from="categories"),
                                     Param("labels", "str"),  # named like one, not declared: left alone
                                     Param("top", "int", 5)))
    assert context_defaults(plugin, source) == {"classes": "star, moon"}
    assert context_defaults(plugin, source, top=9, other=1) == {"classes": "star, moon", "top": 9}
    assert context_defaults(plugin, source, classes="a, b") == {"classes": "a, b"}  # the page's own wins
    assert context_defaults(plugin, None) == {}
