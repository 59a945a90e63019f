"""Models loaded once per process, keyed by model version id (a version never changes:
its bundle is content-hashed), least recently used dropped beyond `capacity`."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from typing import Any

from twinlens.contract.errors import BundleError
from twinlens.services.zero_shot_models import is_zero_shot_path


class ModelCache:
    def __init__(self, capacity: int = 4, device: str | None = None, runtime: str | None = None, settings: Any = None):
        self.capacity = capacity
        self.device = device
        self.runtime = runtime  # torch | onnx; None: the TWINLENS_RUNTIME setting
        self.settings = settings  # for zero-shot versions (calibration); None: the process's settings
        self._models: OrderedDict[uuid.UUID, Any] = OrderedDict()
        self._names: dict[uuid.UUID, str] = {}
        self._lock = threading.Lock()

    def get(self, model_version_id: uuid.UUID, bundle_path: str, expected_version: str) -> Any:
        with self._lock:
            if model_version_id in self._models:
                self._models.move_to_end(model_version_id)
                return self._models[model_version_id]
        predictor = self._load(bundle_path, expected_version)
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
