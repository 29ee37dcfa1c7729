import pytest

from mmneurons.plugins.ui.cache import ResultCache, result_key


def test_keys_identify_model_plugin_target_params_and_source():
    source = "demo_shapes:{}"
    base = result_key("demo:shapes", "probe", "modality", "layer4.0:1", {"top": 5, "z_min": 1.5}, source)
    assert base == result_key("demo:shapes", "probe", "modality", "layer4.0:1", {"z_min": 1.5, "top": 5}, source)
    for other in (result_key("demo:x", "probe", "modality", "layer4.0:1", {"top": 5, "z_min": 1.5}, source),
                  result_key("demo:shapes", "probe", "modality", "layer4.0:2", {"top": 5, "z_min": 1.5}, source),
                  result_key("demo:shapes", "probe", "modality", "layer4.0:1", {"top": 6, "z_min": 1.5}, source),
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


def test_the_run_board_holds_one_run_per_model_and_says_who():
    import threading

    from mmneurons.plugins.ui.cache import RunBoard

    board = RunBoard()
    assert board.holder("m") is None and board.acquire("m", "probe 'a'", timeout=0.1)
    who, seconds = board.holder("m")
    assert who == "probe 'a'" and 0 <= seconds < 5
    assert not board.acquire("m", "probe 'b'", timeout=0.1)  # taken: the second waits
    assert board.acquire("other", "probe 'b'", timeout=0.1)  # another model is free
    got = []
    waiter = threading.Thread(target=lambda: got.append(board.acquire("m", "probe 'b'", timeout=5)))
    waiter.start()
    board.release("m")
    waiter.join(5)
    assert got == [True] and board.holder("m")[0] == "probe 'b'"
    board.release("m")
    board.release("m")  # releasing twice is harmless
    assert board.holder("m") is None
