"""mmneurons: find and explain multimodal neurons in CLIP models."""

__version__ = "0.1.0"
