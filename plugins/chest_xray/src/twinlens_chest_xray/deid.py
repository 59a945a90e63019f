"""DICOM de-identification after the PS3.15 Basic Application Level Confidentiality Profile.

One table says what happens to each identifying attribute (remove, empty, dummy, new
UID, shifted date); a fallback by value representation catches what the table does not
name: person names are emptied, dates shifted, UIDs replaced, free text removed unless
known to be harmless. Private tags, overlays and curves go. The result records itself:
PatientIdentityRemoved=YES, DeidentificationMethod and its code sequence.

Dates are shifted, not removed (the profile's "Retain Longitudinal Temporal Information
with Modified Dates" option): intervals between studies stay true, the calendar does
not. The shift and the replacement UIDs are derived from a secret (TWINLENS_DEID_SECRET,
else random per process) so one patient's studies stay consistent within a deployment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import os
import secrets

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from twinlens.contract.errors import InputError
from twinlens_chest_xray.dicom_io import read_dicom

REMOVE, EMPTY, DUMMY, UID, SHIFT, KEEP = "X", "Z", "D", "U", "S", "K"

# Attribute keyword -> action. Attributes the profile lists, as they occur on radiographs.
PROFILE_ACTIONS: dict[str, str] = {
    # patient
    "PatientName": EMPTY, "PatientID": DUMMY, "PatientBirthDate": EMPTY, "PatientBirthTime": REMOVE,
    "PatientSex": EMPTY, "PatientAge": REMOVE, "PatientSize": REMOVE, "PatientWeight": REMOVE,
    "PatientAddress": REMOVE, "PatientTelephoneNumbers": REMOVE, "PatientMotherBirthName": REMOVE,
    "PatientBirthName": REMOVE, "OtherPatientIDs": REMOVE, "OtherPatientNames": REMOVE,
    "OtherPatientIDsSequence": REMOVE, "IssuerOfPatientID": REMOVE, "MedicalRecordLocator": REMOVE,
    "EthnicGroup": REMOVE, "Occupation": REMOVE, "AdditionalPatientHistory": REMOVE, "PatientComments": REMOVE,
    "MilitaryRank": REMOVE, "BranchOfService": REMOVE, "CountryOfResidence": REMOVE, "RegionOfResidence": REMOVE,
    "PatientReligiousPreference": REMOVE, "PatientInsurancePlanCodeSequence": REMOVE, "ResponsiblePerson": REMOVE,
    "ResponsibleOrganization": REMOVE, "PatientState": REMOVE, "PregnancyStatus": REMOVE,
    "MedicalAlerts": REMOVE, "Allergies": REMOVE, "SmokingStatus": REMOVE, "LastMenstrualDate": REMOVE,
    # people and places
    "ReferringPhysicianName": EMPTY, "ReferringPhysicianAddress": REMOVE,
    "ReferringPhysicianTelephoneNumbers": REMOVE, "PerformingPhysicianName": REMOVE,
    "NameOfPhysiciansReadingStudy": REMOVE, "PhysiciansOfRecord": REMOVE, "OperatorsName": REMOVE,
    "RequestingPhysician": REMOVE, "ScheduledPerformingPhysicianName": REMOVE, "ConsultingPhysicianName": REMOVE,
    "ContentCreatorName": EMPTY, "InstitutionName": REMOVE, "InstitutionAddress": REMOVE,
    "InstitutionalDepartmentName": REMOVE, "StationName": REMOVE, "DeviceSerialNumber": REMOVE,
    "PersonName": REMOVE, "VerifyingObserverName": EMPTY, "PersonAddress": REMOVE,
    # the order and the study
    "AccessionNumber": EMPTY, "StudyID": EMPTY, "AdmissionID": REMOVE, "AdmittingDiagnosesDescription": REMOVE,
    "StudyDescription": REMOVE, "SeriesDescription": REMOVE, "ImageComments": REMOVE, "ProtocolName": REMOVE,
    "RequestedProcedureDescription": REMOVE, "PerformedProcedureStepDescription": REMOVE,
    "PerformedProcedureStepID": REMOVE, "RequestedProcedureID": REMOVE, "ScheduledProcedureStepID": REMOVE,
    "DerivationDescription": REMOVE, "RequestAttributesSequence": REMOVE, "ReferencedStudySequence": REMOVE,
    "ReferencedPatientSequence": REMOVE, "ReferencedPerformedProcedureStepSequence": REMOVE,
    "ReasonForStudy": REMOVE, "ReasonForTheRequestedProcedure": REMOVE, "TextComments": REMOVE,
    "AcquisitionComments": REMOVE, "FillerOrderNumberImagingServiceRequest": EMPTY,
    "PlacerOrderNumberImagingServiceRequest": EMPTY, "DeviceUID": UID,
    # times that, with a shifted date, still pin the visit (the profile empties them)
    "StudyTime": EMPTY, "SeriesTime": REMOVE, "AcquisitionTime": REMOVE, "ContentTime": EMPTY,
    "InstanceCreationTime": REMOVE,
}
# UIDs that name a kind of thing (an SOP class, a transfer syntax), not an instance.
KEEP_UIDS = {"SOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID", "ReferencedSOPClassUID",
             "ImplementationClassUID", "CodingSchemeUID", "AffectedSOPClassUID", "RequestedSOPClassUID"}
# Free-text attributes known to hold no identity (device make, LUT explanations, codes).
SAFE_TEXT = {"Manufacturer", "ManufacturerModelName", "SoftwareVersions", "RescaleType",
             "WindowCenterWidthExplanation", "LUTExplanation", "CodeValue", "CodingSchemeDesignator",
             "CodeMeaning", "CodingSchemeVersion", "DeidentificationMethod", "ImplementationVersionName",
             "SpecificCharacterSet"}
_FREE_TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "AE"}
METHOD = "TwinLens: PS3.15 Basic Profile, dates shifted, UIDs replaced"  # LO: at most 64 chars
_METHOD_CODES = (("113100", "Basic Application Confidentiality Profile"),
                 ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))


def _process_secret() -> bytes:
    configured = os.environ.get("TWINLENS_DEID_SECRET")
    return configured.encode() if configured else secrets.token_bytes(32)


_SECRET = _process_secret()


class Deidentifier:
    def __init__(self, secret: bytes | None = None):
        self._secret = secret or _SECRET

    def _digest(self, *parts: str) -> bytes:
        return hmac.new(self._secret, "\x1f".join(parts).encode(), hashlib.sha256).digest()

    def date_offset(self, patient_id: str) -> dt.timedelta:
        """Between 1 and 10 years back, fixed per patient for this secret."""
        days = 365 + int.from_bytes(self._digest("date", patient_id)[:4], "big") % (3650 - 365)
        return dt.timedelta(days=-days)

    def new_uid(self, old: str) -> str:
        """A 2.25 (UUID-derived) UID from the keyed hash of the old one: stable per secret."""
        return "2.25." + str(int.from_bytes(self._digest("uid", old)[:16], "big"))

    def pseudonym(self, patient_id: str) -> str:
        return "ANON-" + self._digest("id", patient_id).hex()[:12].upper()

    def deidentify(self, ds: Dataset) -> Dataset:
        """De-identify `ds` in place (nested sequences included) and record it."""
        patient_id = str(ds.get("PatientID", "") or "")
        offset = self.date_offset(patient_id)
        ds.remove_private_tags()
        self._strip_groups(ds)
        self._apply(ds, offset, patient_id)
        if getattr(ds, "file_meta", None) is not None:
            self._apply(ds.file_meta, offset, patient_id)
            if "SOPInstanceUID" in ds:
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.pop("SourceApplicationEntityTitle", None)
        _record(ds)
        return ds

    def _apply(self, ds: Dataset, offset: dt.timedelta, patient_id: str) -> None:
        for element in list(ds):
            action = _action_for(element)
            if element.VR == "SQ" and action == KEEP:
                for item in element.value:
                    self._apply(item, offset, patient_id)
                continue
            self._act(ds, element, action, offset, patient_id)

    def _act(self, ds: Dataset, element: DataElement, action: str, offset: dt.timedelta, patient_id: str) -> None:
        if action == REMOVE:
            del ds[element.tag]
        elif action == EMPTY:
            element.value = None if element.VR != "SQ" else Sequence()
        elif action == DUMMY:
            element.value = self.pseudonym(patient_id)
        elif action == UID and element.value:
            element.value = _map_values(element.value, self.new_uid)
        elif action == SHIFT and element.value:
            element.value = _map_values(element.value, lambda v: _shift(v, element.VR, offset))

    @staticmethod
    def _strip_groups(ds: Dataset) -> None:
        # Curves (50xx) and overlays (60xx) can carry drawn-in text and annotations.
        for element in list(ds):
            if element.tag.group & 0xFF00 in (0x5000, 0x6000):
                del ds[element.tag]


def _action_for(element: DataElement) -> str:
    keyword = element.keyword
    if keyword in PROFILE_ACTIONS:
        return PROFILE_ACTIONS[keyword]
    if element.VR == "PN":
        return EMPTY
    if element.VR in ("DA", "DT"):
        return SHIFT
    if element.VR == "UI":
        return KEEP if keyword in KEEP_UIDS else UID
    if element.VR in _FREE_TEXT_VRS and keyword not in SAFE_TEXT:
        return REMOVE
    return KEEP


def _map_values(value, func):
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [func(str(v)) for v in value]
    return func(str(value))


def _shift(value: str, vr: str, offset: dt.timedelta) -> str:
    """Shift a DA (YYYYMMDD) or the date part of a DT; unparsable values are emptied."""
    try:
        day = dt.datetime.strptime(value[:8], "%Y%m%d").date()
    except ValueError:
        return ""
    shifted = (day + offset).strftime("%Y%m%d")
    return shifted if vr == "DA" else shifted + value[8:]


def _record(ds: Dataset) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    codes = []
    for value, meaning in _METHOD_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)


def deidentify_dicom_bytes(data: bytes, deidentifier: Deidentifier | None = None) -> bytes:
    """De-identified DICOM bytes (a Part 10 file with its meta header)."""
    ds = read_dicom(data)
    if "PixelData" not in ds:
        raise InputError("image", "DICOM file has no pixel data", status=422)
    (deidentifier or Deidentifier()).deidentify(ds)
    if getattr(ds, "file_meta", None) is None or "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta = ds.file_meta if getattr(ds, "file_meta", None) is not None else FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.1.1")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", generate_uid())
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()
