"""The embedded demo model: a small CLIP trained on synthetic shape concepts in three forms.

``data`` generates the images, ``tokenizer`` the captions' vocabulary, ``train`` trains the model,
``evaluate`` measures what it learned, ``paper`` checks the paper's methods on it, ``plugin`` holds
the ``demo`` model provider and the ``demo_shapes`` image source, and ``commands`` the ``mmneurons
demo`` commands. This package imports
nothing heavy: the commands are listed without loading torch.
"""

from pathlib import Path

#: the shipped model: ``shapes.pt`` and ``manifest.json``
ASSETS = Path(__file__).parent / "assets"
#: the seed of the ``demo_shapes`` probe set
PROBE_SEED = 7
