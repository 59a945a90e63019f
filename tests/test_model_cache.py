"""The worker's model cache: least recently used out beyond its capacity, and preloading
that never evicts (a worker with more active models than room used to reload the evicted
ones at every look for new models, every 5 s, for as long as it ran)."""

import uuid

from twinlens.worker.model_cache import ModelCache


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
    assert cache.get(*third) == "model v2"
    assert cache.preload(*first) is True and cache.preload(*second) is False
    assert loads == ["v0", "v1", "v2"]
