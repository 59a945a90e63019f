"""Shared fixtures: the plugin, generated images and DICOM files with planted PHI."""

from __future__ import annotations

import numpy as np
import pytest

from twinlens_chest_xray import ChestXrayPlugin
from twinlens_chest_xray.synth_image import render_radiograph

# Clearly fake identifiers planted in test files; none may survive de-identification.
PLANTED = {
    "PatientName": "Fakename^Zorblax",
    "PatientID": "FAKEID-998877",
    "PatientBirthDate": "19610314",
    "PatientAddress": "42 Imaginary Lane, Faketown",
    "PatientTelephoneNumbers": "555-0199-FAKE",
    "OtherPatientIDs": "OTHERFAKE-55",
    "ReferringPhysicianName": "Placeholder^Quimby",
    "PerformingPhysicianName": "Mockingham^Ottoline",
    "OperatorsName": "Dummington^Barnaby",
    "AccessionNumber": "ACCFAKE0042",
    "InstitutionName": "Nowhere General Test Hospital",
    "InstitutionAddress": "1 Fictional Road, Nowhereville",
    "StationName": "FAKESTATION7",
    "StudyDescription": "CHEST for Zorblax Fakename",
    "StudyID": "STUDYFAKE9",
    "StudyDate": "20210505",
    "SeriesDate": "20210505",
}


@pytest.fixture(scope="session")
def plugin() -> ChestXrayPlugin:
    return ChestXrayPlugin()


@pytest.fixture(scope="session")
def chest_pixels() -> np.ndarray:
    return render_radiograph({"Pleural Effusion": 1.0}, np.random.default_rng(7), size=192)
