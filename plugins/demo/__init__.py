"""The embedded demo model: a small CLIP trained on synthetic shape concepts in three forms.

``data`` generates the images, ``tokenizer`` the captions' vocabulary, ``train`` trains the model,
``evaluate`` measures what it learned, and ``plugin`` registers the ``demo`` model provider, the
``demo_shapes`` image source and the ``mmneurons demo`` commands.
"""
