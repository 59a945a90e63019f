"""Models loaded once per process, keyed by model version id (a version never changes:
its bundle is content-hashed), least recently used dropped beyond `capacity`.

One loaded model serves every thread of the worker (prediction batches, bulk files, query
embeddings, shadow runs), so its model calls take turns (`SharedModel`): explanations
hook into the text encoder (captum's integrated gradients patch its embedding layer's
output), and another thread's forward pass through that layer meanwhile would get the
explained batch's tensors.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from contextlib import nullcontext
from typing import Any

from twinlens.contract.errors import BundleError
from twinlens.services.zero_shot_models import is_zero_shot_path


class SharedModel:
    """A cached predictor whose model calls take turns. `predict`/`predict_encoded` take the
    turn themselves; a longer stretch that must not interleave with other threads (a batch's
    predictions and then its explanations) holds `turn` around it (re-entrant). Everything
    else (preprocess, label_schema, ...) is the predictor's own."""

    def __init__(self, predictor: Any):
        self.inner = predictor
        self.turn = threading.RLock()

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        with self.turn:
            return self.inner.predict(*args, **kwargs)

    def predict_encoded(self, *args: Any, **kwargs: Any) -> Any:
        with self.turn:
            return self.inner.predict_encoded(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def model_turn(predictor: Any) -> Any:
    """The context to hold around a stretch of model calls on `predictor`: its turn when the
    cache shares it between threads, nothing for a predictor a caller loaded for itself."""
    turn = getattr(predictor, "turn", None)
    return turn if turn is not None else nullcontext()


class ModelCache:
    def __init__(self, capacity: int = 4, device: str | None = None, runtime: str | None = None, settings: Any = None):
        self.capacity = capacity
        self.device = device
        self.runtime = runtime  # torch | onnx; None: the TWINLENS_RUNTIME setting
        self.settings = settings  # for zero-shot versions (calibration); None: the process's settings
        self._models: OrderedDict[uuid.UUID, SharedModel] = OrderedDict()
        self._names: dict[uuid.UUID, str] = {}
        self._lock = threading.Lock()

    def get(self, model_version_id: uuid.UUID, bundle_path: str, expected_version: str) -> SharedModel:
        with self._lock:
            if model_version_id in self._models:
                self._models.move_to_end(model_version_id)
                return self._models[model_version_id]
        predictor = SharedModel(self._load(bundle_path, expected_version))
        with self._lock:
            self._models[model_version_id] = predictor
            self._names[model_version_id] = expected_version
            while len(self._models) > self.capacity:
                evicted, _ = self._models.popitem(last=False)
                self._names.pop(evicted, None)
        return predictor

    def preload(self, model_version_id: uuid.UUID, bundle_path: str, expected_version: str) -> bool:
        """Load a model ahead of its first job if there is room; never evicts one: with more
        active models than `capacity`, preloading them all would reload the evicted ones at
        every look, forever. True when the model is loaded."""
        with self._lock:
            if model_version_id in self._models:
                return True
            if len(self._models) >= self.capacity:
                return False
        self.get(model_version_id, bundle_path, expected_version)
        return True

    def _load(self, bundle_path: str, expected_version: str) -> Any:
        from twinlens.engine.predictor import Predictor  # torch: only where models run

        if is_zero_shot_path(bundle_path):  # no bundle: the classifier is built from the plugin
            from twinlens.worker.zero_shot_loader import load_zero_shot

            return load_zero_shot(bundle_path, expected_version, self.settings, device=self.device)
        predictor = Predictor.from_bundle(bundle_path, device=self.device, runtime=self.runtime or _runtime_setting())
        loaded = f"{predictor.plugin_name}@{predictor.version}"
        if loaded != expected_version:
            raise BundleError(f"{bundle_path} now holds {loaded}, but this model version is {expected_version}")
        return predictor

    def loaded(self) -> list[str]:
        with self._lock:
            return [self._names[key] for key in self._models]


def _runtime_setting() -> str:
    from twinlens.settings import get_settings

    return get_settings().runtime
