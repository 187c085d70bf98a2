"""A job's options: the accepted formats ride in the job's record but change no output, so they
stay out of the fingerprint (every fingerprint made before them is unchanged) and the sidecar."""

from __future__ import annotations

import json

from sir_convert_a_lot.formats import FORMAT_NAMES
from sir_convert_a_lot.options import ConversionOptions

# Fingerprints of the code before issue 25 (main at fd3827c), for the same options.
BEFORE = {
    "defaults": "sha256:1147924b54e8aa9763bdc7627822a79e350aee05d675ad3a9e80538c5b1b143c",
    "pymupdf": "sha256:a9949f8944a202277b82a39aa52f0a7179636a6c28edc87d4f9cd8e92bb8538d",
}


def test_fingerprints_made_before_the_accepted_formats_existed_are_unchanged() -> None:
    pymupdf = ConversionOptions(
        backend_strategy="pymupdf",
        ocr_mode="off",
        acceleration_policy="cpu_only",
        images="referenced",
    )
    assert ConversionOptions().fingerprint() == BEFORE["defaults"]
    assert pymupdf.fingerprint() == BEFORE["pymupdf"]
    narrowed = ConversionOptions(accepted_formats=("pdf",))
    assert narrowed.fingerprint() == BEFORE["defaults"]


def test_the_accepted_formats_are_no_effective_option() -> None:
    options = ConversionOptions(accepted_formats=("pdf", "docx"))
    assert "accepted_formats" not in options.effective()
    assert options.effective()["formats"] == ("markdown",)  # the outputs still are


def test_the_accepted_formats_round_trip_through_a_job_record() -> None:
    options = ConversionOptions(accepted_formats=("docx", "pdf"), formats=("markdown",))
    record = json.loads(json.dumps(options.to_dict()))
    assert ConversionOptions.from_dict(record) == options


def test_a_record_written_before_them_accepts_every_format() -> None:
    old_record = {k: v for k, v in ConversionOptions().to_dict().items() if k != "accepted_formats"}
    assert ConversionOptions.from_dict(old_record).accepted_formats == FORMAT_NAMES
