"""Shared fixtures: the plugin, generated images and DICOM files with planted PHI."""

from __future__ import annotations

import numpy as np
import pytest

from twinlens_chest_xray import ChestXrayPlugin
from twinlens_chest_xray.synth_image import render_radiograph

@pytest.fixture(scope="session")
def plugin() -> ChestXrayPlugin:
    return ChestXrayPlugin()


@pytest.fixture(scope="session")
def chest_pixels() -> np.ndarray:
    return render_radiograph({"Pleural Effusion": 1.0}, np.random.default_rng(7), size=192)
