"""Shared by the feature-visualization tests: fast settings, known units of demo:shapes."""

FAST = {"steps": 48, "lr": 0.05, "thresholds": "16"}
STAR_UNIT = "layer4.0:51"        # a multimodal "star" unit of demo:shapes (its manifest lists it)
ACTIVE_ON_GRAY = "layer4.0:34"   # active on gray (0.91) and on noise (0.83): room to go down
ZERO_ON_GRAY_AND_NOISE = "layer4.0:20"  # a post-ReLU unit that reads exactly 0 on gray and on noise


def vis(registry, name):
    return registry.get("mmneurons_visualizers", name)


def hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.visual.modules())
