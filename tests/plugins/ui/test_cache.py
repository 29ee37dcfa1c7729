import pytest

from mmneurons.plugins.ui.cache import ResultCache, result_key


def test_keys_identify_model_plugin_target_params_and_source():
    base = result_key("demo:shapes", "probe", "modality", "layer4.0:1", {"top": 5, "z_min": 1.5}, "demo_shapes:{}")
    assert base == result_key("demo:shapes", "probe", "modality", "layer4.0:1", {"z_min": 1.5, "top": 5}, "demo_shapes:{}")
    for other in (result_key("demo:x", "probe", "modality", "layer4.0:1", {"top": 5, "z_min": 1.5}, "demo_shapes:{}"),
                  result_key("demo:shapes", "probe", "modality", "layer4.0:2", {"top": 5, "z_min": 1.5}, "demo_shapes:{}"),
                  result_key("demo:shapes", "probe", "modality", "layer4.0:1", {"top": 6, "z_min": 1.5}, "demo_shapes:{}"),
                  result_key("demo:shapes", "probe", "modality", "layer4.0:1", {"top": 5, "z_min": 1.5}, "folder:{}"),
                  result_key("demo:shapes", "visualizer", "modality", "layer4.0:1", {"top": 5, "z_min": 1.5},
                             "demo_shapes:{}")):
        assert other != base


def test_least_recently_used_result_goes_first():
    cache = ResultCache(max_items=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2 and sorted(cache.values()) == [1, 3]
    cache.clear()
    assert len(cache) == 0 and cache.get("a", "none") == "none"


def test_cache_needs_room():
    with pytest.raises(ValueError):
        ResultCache(0)
