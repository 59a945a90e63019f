"""The worker's model cache: least recently used out beyond its capacity, and preloading
that never evicts (a worker with more active models than room used to reload the evicted
ones at every look for new models, every 5 s, for as long as it ran); a cached model's
calls from several threads take turns (a CI run failed inside BERT's embeddings when an
explanation's hooks and another thread's forward pass met in the same text encoder)."""

import threading
import time
import uuid

from twinlens.worker.model_cache import ModelCache, SharedModel, model_turn


def _counting_cache(capacity: int) -> tuple[ModelCache, list[str]]:
    cache, loads = ModelCache(capacity=capacity), []

    def load(bundle_path: str, expected_version: str) -> str:
        loads.append(expected_version)
        return f"model {expected_version}"

    cache._load = load
    return cache, loads


def test_preloading_more_active_models_than_room_loads_each_once():
    cache, loads = _counting_cache(capacity=2)
    active = [(uuid.uuid4(), f"/bundles/{n}", f"v{n}") for n in range(5)]
    for _ in range(3):  # three looks for new models
        results = [cache.preload(*model) for model in active]
    assert results == [True, True, False, False, False]
    assert loads == ["v0", "v1"], "the first two are loaded once; the others wait for a job"


def test_a_job_still_loads_its_model_and_evicts_the_least_recently_used():
    cache, loads = _counting_cache(capacity=2)
    first, second, third = [(uuid.uuid4(), f"/bundles/{n}", f"v{n}") for n in range(3)]
    cache.get(*first)
    cache.get(*second)
    cache.get(*first)  # used again: second is now the least recently used
    assert cache.get(*third).inner == "model v2"
    assert cache.preload(*first) is True and cache.preload(*second) is False
    assert loads == ["v0", "v1", "v2"]


class _OverlapRecorder:
    """A predictor that notes when two of its calls run at the same time."""

    def __init__(self):
        self.running = 0
        self.overlaps = 0
        self.calls = 0
        self.label_schema = "schema"

    def predict_encoded(self, encoded, contributions=True):
        self.running += 1
        self.overlaps += self.running > 1
        time.sleep(0.002)
        self.calls += 1
        self.running -= 1
        return [f"prediction {item}" for item in encoded]


def _hammer(call, threads: int = 4, each: int = 25) -> None:
    workers = [threading.Thread(target=lambda: [call() for _ in range(each)]) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_a_shared_models_calls_from_several_threads_take_turns():
    bare = _OverlapRecorder()
    _hammer(lambda: bare.predict_encoded([1]))
    assert bare.overlaps > 0, "without turns the threads' calls do overlap (the recorder can see it)"
    shared = SharedModel(_OverlapRecorder())
    _hammer(lambda: shared.predict_encoded([1], contributions=False))
    assert shared.inner.calls == 100 and shared.inner.overlaps == 0
    assert shared.label_schema == "schema", "everything else is the predictor's own"


def test_a_held_turn_keeps_other_threads_calls_out_of_a_whole_stretch():
    shared = SharedModel(_OverlapRecorder())
    order: list[str] = []

    def other_thread():
        shared.predict_encoded([2])
        order.append("other thread's call")

    with model_turn(shared):  # a batch's predictions, then its explanations
        shared.predict_encoded([1])  # re-entrant: the holder's own calls go through
        other = threading.Thread(target=other_thread)
        other.start()
        time.sleep(0.05)
        order.append("explanations done")
    other.join()
    assert order == ["explanations done", "other thread's call"]


def test_the_cache_hands_out_shared_models_and_a_bare_predictor_needs_no_turn():
    cache, _ = _counting_cache(capacity=1)
    loaded = cache.get(uuid.uuid4(), "/bundles/0", "v0")
    assert isinstance(loaded, SharedModel)
    assert model_turn(loaded) is loaded.turn
    bare_turn = model_turn(_OverlapRecorder())  # a predictor a caller loaded for itself: nothing to hold
    assert not hasattr(bare_turn, "acquire")
    with bare_turn:
        pass
