"""The built-in app plugin's renderers cover every built-in result kind; plugins declare what they take."""


def test_every_builtin_result_kind_has_a_renderer(registry):
    kinds = {r.result_kind for r in registry.renderers()}
    assert {"probe", "feature_vis", "attribution_map", "unit_contributions"} <= kinds
    assert all(r.provided_by == "app" for r in registry.renderers())


def test_every_probe_and_visualizer_declares_what_it_takes(registry):
    from mmneurons.kinds import PROBE_SOURCES, PROBE_TARGETS

    for probe in registry.probes():
        assert probe.targets and set(probe.targets) <= set(PROBE_TARGETS), probe
        assert probe.source in PROBE_SOURCES, probe
    for vis in registry.visualizers():
        assert vis.targets and set(vis.targets) <= {"unit", "direction", "text"}, vis
