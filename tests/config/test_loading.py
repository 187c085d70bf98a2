"""The TOML config: complete defaults, strict validation naming the key, and the CLI's exit 2."""

from __future__ import annotations

import copy
import dataclasses
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from sir_convert_a_lot import config as config_module
from sir_convert_a_lot.config import SCHEMA, Config, Governance, parse, render_default
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.formats import FORMAT_NAMES
from sir_convert_a_lot.ops.cli import main
from tests.helpers import config_document, write_config

MIB = 1024 * 1024


def _parse(document: dict[str, Any], base: Path) -> Config:
    return parse(document, base_dir=base)


def _gpu_document(root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A valid document whose defaults use the GPU engine (docling, gpu_required, OCR auto)."""
    document = config_document(root)
    document["conversion"].update(
        backend_strategy="auto", ocr_mode="auto", acceleration_policy="gpu_required"
    )
    for section, values in sections.items():
        document.setdefault(section, {}).update(values)
    return document


# --- render_default: complete, and the contract's defaults ------------------------------------


def test_render_default_lists_every_key_of_the_schema(tmp_path: Path) -> None:
    document = tomllib.loads(render_default(tmp_path))

    for section, keys in SCHEMA.items():
        assert section in document, f"section [{section}] missing from init-config output"
        assert set(document[section]) == set(keys), section
    assert document.get("profiles") == {}


def test_render_default_parses_back_to_the_contract_defaults(tmp_path: Path) -> None:
    config = _parse(tomllib.loads(render_default(tmp_path)), tmp_path)

    assert config.watch.mode == "inotify"
    assert config.watch.poll_interval_seconds == 2
    assert config.watch.stability_seconds == 5
    assert config.watch.rescan_interval_seconds == 300
    assert tuple(config.watch.ignore) == ()
    assert config.output.on_collision == "suffix"
    assert config.output.source_after_success == "archive"
    assert config.retry.max_attempts == 3
    assert config.instances.lease_seconds == 60
    assert config.gpu.device_index == 0
    assert config.gpu.models_path == "/var/cache/sir-convert/models"
    assert config.governance == Governance(
        allow_cpu_only=False, allow_cpu_fallback=False, decision_record=""
    )
    assert config.governance.unlocked is False
    assert config.governance.lock == "gpu_first"
    assert config.service.stop_grace_seconds == 60
    assert config.conversion.max_file_bytes == 50 * MIB
    assert config.defaults.acceleration_policy == "gpu_required"
    assert config.instances.name == f"{socket.gethostname()}-gpu0"
    assert dict(config.profiles) == {}


def test_render_default_puts_every_folder_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    config = _parse(tomllib.loads(render_default(root)), tmp_path)

    for name, path in config.paths.named().items():
        assert path.is_absolute(), name
        assert path.is_relative_to(root), name
    assert len(set(config.paths.named().values())) == 5


def test_default_document_is_fresh_each_time(tmp_path: Path) -> None:
    # If the document shares the schema's default list, undo the damage for later tests.
    schema_default = SCHEMA["watch"]["ignore"].default
    saved = list(schema_default)
    try:
        first = config_module.default_document(tmp_path)
        first["watch"]["ignore"].append("*.bak")
        first["conversion"]["ocr_mode"] = "force"

        second = config_module.default_document(tmp_path)

        assert second["watch"]["ignore"] == []
        assert second["conversion"]["ocr_mode"] == "auto"
        assert tomllib.loads(render_default(tmp_path))["watch"]["ignore"] == []
    finally:
        schema_default[:] = saved


def test_default_instance_name_follows_the_device_index(tmp_path: Path) -> None:
    document = tomllib.loads(render_default(tmp_path))
    document["gpu"]["device_index"] = 3

    assert _parse(document, tmp_path).instances.name == f"{socket.gethostname()}-gpu3"


def test_an_explicit_instance_name_wins(tmp_path: Path) -> None:
    document = tomllib.loads(render_default(tmp_path))
    document["instances"]["name"] = "scanner-box"

    assert _parse(document, tmp_path).instances.name == "scanner-box"


# --- strict validation: every error names the dotted key first --------------------------------

BAD_VALUES: list[tuple[str, str, Any]] = [
    # (id, dotted key, value set in an otherwise valid document)
    ("unknown-key", "watch.modee", "polling"),
    ("unknown-key-paths", "paths.tmp", "/tmp/x"),
    ("wrong-type-str", "watch.mode", 1),
    ("true-for-int", "retry.max_attempts", True),
    ("true-for-int-device", "gpu.device_index", True),
    ("true-for-number", "watch.stability_seconds", True),
    ("one-for-bool", "governance.allow_cpu_only", 1),
    ("one-for-bool-fallback", "governance.allow_cpu_fallback", 1),
    ("float-for-int", "conversion.max_file_bytes", 1.5),
    ("string-for-number", "watch.poll_interval_seconds", "2"),
    ("string-for-list", "watch.ignore", "*.bak"),
    ("int-for-path", "paths.inbox", 5),
    ("bad-mode", "watch.mode", "fast"),
    ("timeout-too-small", "conversion.document_timeout_seconds", 10),
    ("timeout-too-large", "conversion.document_timeout_seconds", 9000),
    ("timeout-just-below", "conversion.document_timeout_seconds", 29),
    ("timeout-just-above", "conversion.document_timeout_seconds", 7201),
    ("bad-collision", "output.on_collision", "overwrite"),
    ("bad-disposal", "output.source_after_success", "keep"),
    ("zero-attempts", "retry.max_attempts", 0),
    ("negative-device", "gpu.device_index", -1),
    ("bad-backend", "conversion.backend_strategy", "marker"),
    ("bad-ocr", "conversion.ocr_mode", "sometimes"),
    ("bad-table", "conversion.table_mode", "slow"),
    ("bad-normalize", "conversion.normalize", "heavy"),
    ("bad-policy", "conversion.acceleration_policy", "gpu_only"),
    ("zero-max-bytes", "conversion.max_file_bytes", 0),
    ("empty-glob", "watch.ignore", [""]),
    ("empty-path", "paths.outbox", ""),
    ("profile-unknown-key", "profiles.scans.inbox", "/x"),
    ("profile-bad-value", "profiles.scans.ocr_mode", "always"),
    ("profile-wrong-type", "profiles.scans.document_timeout_seconds", "60"),
    ("profile-timeout-range", "profiles.scans.document_timeout_seconds", 10),
    ("instance-a-path", "instances.name", "../../etc/evil"),
    ("instance-hidden", "instances.name", ".lease"),
    ("instance-too-long", "instances.name", "g" * 101),
    ("unknown-format", "conversion.formats", ["pdf", "pages"]),
    ("no-format", "conversion.formats", []),
    ("format-twice", "conversion.formats", ["pdf", "pdf"]),
    ("format-not-a-name", "conversion.formats", ["pdf", 1]),
    ("formats-not-a-list", "conversion.formats", "pdf"),
    ("profile-unknown-format", "profiles.scans.formats", ["zip"]),
]


def _set(document: dict[str, Any], dotted: str, value: Any) -> None:
    *tables, name = dotted.split(".")
    for table in tables:
        document = document.setdefault(table, {})
    document[name] = value


@pytest.mark.parametrize(
    ("key", "value"), [pytest.param(key, value, id=name) for name, key, value in BAD_VALUES]
)
def test_a_bad_key_is_refused_naming_the_key(tmp_path: Path, key: str, value: Any) -> None:
    document = _gpu_document(tmp_path)
    _set(document, key, copy.deepcopy(value))

    with pytest.raises(ConfigError) as caught:
        _parse(document, tmp_path)

    assert str(caught.value).startswith(f"{key}:"), str(caught.value)


def test_an_unknown_section_is_refused_naming_it(tmp_path: Path) -> None:
    document = _gpu_document(tmp_path)
    document["wach"] = {"mode": "polling"}

    with pytest.raises(ConfigError) as caught:
        _parse(document, tmp_path)

    assert str(caught.value).startswith("wach:")


@pytest.mark.parametrize("timeout", [30, 7200])
def test_document_timeout_bounds_are_inclusive(tmp_path: Path, timeout: int) -> None:
    document = _gpu_document(tmp_path, conversion={"document_timeout_seconds": timeout})

    assert _parse(document, tmp_path).defaults.document_timeout_seconds == timeout


def test_a_missing_section_takes_its_defaults(tmp_path: Path) -> None:
    document = _gpu_document(tmp_path)
    del document["retry"]
    del document["output"]

    config = _parse(document, tmp_path)

    assert config.retry.max_attempts == 3
    assert config.output.on_collision == "suffix"
    assert config.output.source_after_success == "archive"


# --- pymupdf is CPU-only and OCR-free ---------------------------------------------------------


@pytest.mark.parametrize("policy", ["gpu_required", "gpu_prefer"])
def test_pymupdf_defaults_with_a_gpu_policy_are_refused(tmp_path: Path, policy: str) -> None:
    document = config_document(
        tmp_path,
        conversion={
            "backend_strategy": "pymupdf",
            "ocr_mode": "off",
            "acceleration_policy": policy,
        },
    )

    with pytest.raises(ConfigError) as caught:
        _parse(document, tmp_path)

    assert str(caught.value).startswith("conversion.acceleration_policy:")


@pytest.mark.parametrize("ocr_mode", ["auto", "force"])
def test_pymupdf_defaults_with_ocr_are_refused(tmp_path: Path, ocr_mode: str) -> None:
    document = config_document(
        tmp_path,
        conversion={
            "backend_strategy": "pymupdf",
            "ocr_mode": ocr_mode,
            "acceleration_policy": "cpu_only",
        },
    )

    with pytest.raises(ConfigError) as caught:
        _parse(document, tmp_path)

    assert str(caught.value).startswith("conversion.ocr_mode:")


@pytest.mark.parametrize(
    ("profile", "key"),
    [
        # inherits gpu_required from the defaults
        ({"backend_strategy": "pymupdf", "ocr_mode": "off"}, "acceleration_policy"),
        (
            {"backend_strategy": "pymupdf", "ocr_mode": "off", "acceleration_policy": "gpu_prefer"},
            "acceleration_policy",
        ),
        # inherits ocr_mode = "auto" from the defaults
        ({"backend_strategy": "pymupdf", "acceleration_policy": "cpu_only"}, "ocr_mode"),
        (
            {"backend_strategy": "pymupdf", "acceleration_policy": "cpu_only", "ocr_mode": "force"},
            "ocr_mode",
        ),
    ],
)
def test_a_pymupdf_profile_with_a_gpu_policy_or_ocr_is_refused(
    tmp_path: Path, profile: dict[str, Any], key: str
) -> None:
    document = _gpu_document(tmp_path, profiles={"quick": profile})

    with pytest.raises(ConfigError) as caught:
        _parse(document, tmp_path)

    assert str(caught.value).startswith(f"profiles.quick.{key}:"), str(caught.value)


def test_a_profile_asking_for_the_gpu_on_pymupdf_defaults_is_refused(tmp_path: Path) -> None:
    document = config_document(tmp_path, profiles={"fast": {"acceleration_policy": "gpu_prefer"}})

    with pytest.raises(ConfigError) as caught:
        _parse(document, tmp_path)

    assert str(caught.value).startswith("profiles.fast.acceleration_policy:")


@pytest.mark.parametrize(
    ("formats", "why"),
    [
        (["docling_json"], 'must include "markdown"'),
        (["markdown", "pdf"], "'pdf' is not a format"),
        (["markdown", "markdown"], "twice"),
        ("markdown", "expected"),
    ],
)
def test_output_formats_must_list_known_formats_with_markdown(
    tmp_path: Path, formats: Any, why: str
) -> None:
    document = _gpu_document(tmp_path, output={"formats": formats})

    with pytest.raises(ConfigError, match=r"^output\.formats: ") as caught:
        _parse(document, tmp_path)

    assert why in str(caught.value)


def test_docling_json_on_a_pymupdf_profile_is_refused_naming_output_formats(
    tmp_path: Path,
) -> None:
    pymupdf = {"backend_strategy": "pymupdf", "acceleration_policy": "cpu_only", "ocr_mode": "off"}
    document = _gpu_document(
        tmp_path,
        output={"formats": ["markdown", "docling_json"]},
        profiles={"quick": pymupdf},
    )

    with pytest.raises(ConfigError, match=r"^output\.formats: .*profiles\.quick .*pymupdf"):
        _parse(document, tmp_path)


def test_images_and_formats_are_every_jobs_options_but_no_profile_key(tmp_path: Path) -> None:
    output = {"images": "referenced", "formats": ["markdown", "docling_json"]}
    config = _parse(_gpu_document(tmp_path, output=output, profiles={"p": {}}), tmp_path)

    for options in (config.options_for(None), config.options_for("p")):
        assert options.images == "referenced"
        assert options.formats == ("markdown", "docling_json")
    assert (
        config.options_for(None).fingerprint()
        != dataclasses.replace(config.options_for(None), images="placeholder").fingerprint()
    )
    for where in ({"conversion": {"images": "embedded"}}, {"profiles": {"p": {"images": "x"}}}):
        with pytest.raises(ConfigError, match="images"):
            _parse(_gpu_document(tmp_path, **where), tmp_path)


def test_a_cpu_only_ocr_free_pymupdf_profile_is_accepted(tmp_path: Path) -> None:
    document = _gpu_document(
        tmp_path,
        profiles={
            "quick": {
                "backend_strategy": "pymupdf",
                "acceleration_policy": "cpu_only",
                "ocr_mode": "off",
            }
        },
    )

    config = _parse(document, tmp_path)

    assert config.profiles["quick"].backend == "pymupdf"
    assert config.backends_in_use() == {"docling", "pymupdf"}


# --- governance -------------------------------------------------------------------------------


@pytest.mark.parametrize("switch", ["allow_cpu_only", "allow_cpu_fallback"])
@pytest.mark.parametrize("record", ["", "   "])
def test_an_unlock_without_a_decision_record_is_refused(
    tmp_path: Path, switch: str, record: str
) -> None:
    document = _gpu_document(
        tmp_path,
        governance={
            "allow_cpu_only": False,
            "allow_cpu_fallback": False,
            switch: True,
            "decision_record": record,
        },
    )

    with pytest.raises(ConfigError) as caught:
        _parse(document, tmp_path)

    assert str(caught.value).startswith("governance.decision_record:")


@pytest.mark.parametrize("switch", ["allow_cpu_only", "allow_cpu_fallback"])
def test_an_unlock_with_a_decision_record_unlocks(tmp_path: Path, switch: str) -> None:
    record = "docs/decisions/0007-cpu-for-the-night-shift.md"
    document = _gpu_document(
        tmp_path,
        governance={
            "allow_cpu_only": False,
            "allow_cpu_fallback": False,
            switch: True,
            "decision_record": record,
        },
    )

    governance = _parse(document, tmp_path).governance

    assert getattr(governance, switch) is True
    assert governance.decision_record == record
    assert governance.unlocked is True
    assert governance.lock == "unlocked"


def test_a_decision_record_alone_does_not_unlock(tmp_path: Path) -> None:
    document = _gpu_document(
        tmp_path,
        governance={
            "allow_cpu_only": False,
            "allow_cpu_fallback": False,
            "decision_record": "docs/decisions/0001.md",
        },
    )

    governance = _parse(document, tmp_path).governance

    assert governance.unlocked is False
    assert governance.lock == "gpu_first"


# --- paths and profiles -----------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    document = config_document(tmp_path)
    document["paths"] = {name: f"spool/{name}" for name in config_module.PATH_KEYS}
    document["paths"]["archive"] = str(tmp_path / "elsewhere" / "archive")
    (folder / "config.toml").write_text(tomli_w.dumps(document), encoding="utf-8")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = config_module.load(Path("..") / "etc" / "config.toml")

    for name in ("inbox", "outbox", "state", "failed"):
        path = getattr(config.paths, name)
        assert path.is_absolute(), name
        assert path.resolve() == (folder / "spool" / name).resolve(), name
    assert config.paths.archive == tmp_path / "elsewhere" / "archive"


def test_profiles_override_only_the_keys_they_set(tmp_path: Path) -> None:
    document = _gpu_document(
        tmp_path,
        conversion={"table_mode": "fast", "normalize": "strict", "document_timeout_seconds": 900},
        profiles={"scans": {"ocr_mode": "force"}, "books": {"document_timeout_seconds": 3600}},
    )

    config = _parse(document, tmp_path)

    defaults = config.defaults
    assert defaults.table_mode == "fast"
    assert defaults.normalize == "strict"
    assert config.profiles["scans"] == dataclasses.replace(defaults, ocr_mode="force")
    assert config.profiles["books"] == dataclasses.replace(defaults, document_timeout_seconds=3600)
    assert config.options_for("scans").ocr_mode == "force"
    assert config.options_for(None) == defaults


def test_every_format_is_accepted_unless_the_config_narrows_it(tmp_path: Path) -> None:
    document = _gpu_document(
        tmp_path, profiles={"scans": {"formats": ["pdf", "image"]}, "mail": {"ocr_mode": "off"}}
    )
    config = _parse(document, tmp_path)
    assert config.defaults.accepted_formats == FORMAT_NAMES
    assert config.options_for("scans").accepted_formats == ("pdf", "image")
    assert config.options_for("mail").accepted_formats == FORMAT_NAMES
    narrowed = _parse(_gpu_document(tmp_path, conversion={"formats": ["docx", "pdf"]}), tmp_path)
    assert narrowed.options_for(None).accepted_formats == ("docx", "pdf")


def test_an_unknown_format_is_refused_naming_the_key_and_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(_gpu_document(tmp_path, conversion={"formats": ["pdf", "pages"]}), tmp_path)
    assert str(caught.value).startswith(
        'conversion.formats: unknown format "pages"; known: pdf, image, docx, pptx,'
    )


def test_init_config_writes_every_format(tmp_path: Path) -> None:
    written = tomllib.loads(render_default(tmp_path))
    assert written["conversion"]["formats"] == list(FORMAT_NAMES)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("scans", "a.pdf"), "scans"),
        (("scans", "2024", "march", "a.pdf"), "scans"),
        (("a.pdf",), None),
        (("scans",), None),  # a file named like the profile, directly in the inbox
        (("other", "a.pdf"), None),
        (("Scans", "a.pdf"), None),
    ],
)
def test_profile_of_uses_the_first_folder_level(
    tmp_path: Path, parts: tuple[str, ...], expected: str | None
) -> None:
    config = _parse(_gpu_document(tmp_path, profiles={"scans": {"ocr_mode": "force"}}), tmp_path)

    assert config.profile_of(parts) == expected


# --- load(): file problems name the path (pyfakefs) -------------------------------------------


def test_load_reads_a_file(fs: Any) -> None:
    fs.create_file("/etc/sir-convert/config.toml", contents=render_default(Path("/srv/sc")))

    config = config_module.load(Path("/etc/sir-convert/config.toml"))

    assert config.paths.inbox.is_relative_to("/srv/sc")
    assert config.source == Path("/etc/sir-convert/config.toml")


def test_load_of_a_missing_file_names_the_path(fs: Any) -> None:
    path = Path("/etc/sir-convert/config.toml")

    with pytest.raises(ConfigError) as caught:
        config_module.load(path)

    assert str(caught.value).startswith(str(path))


def test_load_of_non_utf8_bytes_names_the_path(fs: Any) -> None:
    path = Path("/etc/sir-convert/config.toml")
    fs.create_file(path, contents=b'[watch]\nmode = "caf\xe9"\n')

    with pytest.raises(ConfigError) as caught:
        config_module.load(path)

    assert str(caught.value).startswith(str(path))
    assert "UTF-8" in str(caught.value)


def test_load_of_invalid_toml_names_the_path(fs: Any) -> None:
    path = Path("/etc/sir-convert/config.toml")
    fs.create_file(path, contents="[watch\nmode = inotify\n")

    with pytest.raises(ConfigError) as caught:
        config_module.load(path)

    assert str(caught.value).startswith(str(path))
    assert "TOML" in str(caught.value)


def test_load_of_a_folder_names_the_path(fs: Any) -> None:
    fs.create_dir("/etc/sir-convert/config.toml")

    with pytest.raises(ConfigError) as caught:
        config_module.load(Path("/etc/sir-convert/config.toml"))

    assert str(caught.value).startswith("/etc/sir-convert/config.toml")


# --- the CLI: exit 2 and one line on stderr ----------------------------------------------------


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"watch": {"mode": "fast"}}, "watch.mode"),
        ({"retry": {"max_attempts": True}}, "retry.max_attempts"),
        ({"output": {"colision": "suffix"}}, "output.colision"),
        ({"conversion": {"acceleration_policy": "gpu_required"}}, "conversion.acceleration_policy"),
        ({"governance": {"decision_record": ""}}, "governance.decision_record"),
        ({"conversion": {"formats": ["pdf", "pages"]}}, "conversion.formats"),
    ],
)
def test_status_with_a_bad_config_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sections: dict[str, Any], key: str
) -> None:
    path = write_config(tmp_path, **sections)

    code = main(["--config", str(path), "status"])

    out, err = capsys.readouterr()
    assert code == 2
    assert f"{key}:" in _one_line(err)
    assert out == ""


def test_run_with_a_bad_config_exits_2_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sir_convert_a_lot.service.daemon as service

    def must_not_start(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the service started despite an invalid config")

    monkeypatch.setattr(service, "Service", must_not_start)
    path = write_config(tmp_path, watch={"mode": "fast"})

    code = main(["--config", str(path), "run"])

    assert code == 2
    assert "watch.mode:" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "inbox").exists()


def test_status_with_a_missing_config_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nowhere.toml"

    code = main(["--config", str(path), "status"])

    assert code == 2
    assert str(path) in _one_line(capsys.readouterr().err)


def test_init_config_writes_a_file_that_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "etc" / "config.toml"
    root = tmp_path / "srv"

    code = main(
        [
            "--config",
            str(tmp_path / "unused.toml"),
            "init-config",
            "--output",
            str(target),
            "--root",
            str(root),
        ]
    )

    assert code == 0
    config = config_module.load(target)
    for name, path in config.paths.named().items():
        assert path.is_relative_to(root), name
    written = tomllib.loads(target.read_text(encoding="utf-8"))
    for section, keys in SCHEMA.items():
        assert set(written[section]) == set(keys), section
    assert not (tmp_path / "unused.toml").exists()


def test_init_config_takes_a_relative_root_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "etc" / "config.toml"

    assert main(["init-config", "--output", str(target), "--root", "srv"]) == 0

    config = config_module.load(target)
    assert config.paths.inbox.is_relative_to(tmp_path / "srv")


def test_init_config_defaults_to_the_config_path(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"

    assert main(["--config", str(target), "init-config", "--root", str(tmp_path / "srv")]) == 0

    assert config_module.load(target).paths.outbox.is_relative_to(tmp_path / "srv")


def test_init_config_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "config.toml"
    target.write_text("# my hand-tuned config\n", encoding="utf-8")
    argv = ["init-config", "--output", str(target), "--root", str(tmp_path / "srv")]

    code = main(argv)

    assert code == 2
    assert str(target) in _one_line(capsys.readouterr().err)
    assert target.read_text(encoding="utf-8") == "# my hand-tuned config\n"

    assert main([*argv, "--force"]) == 0
    assert config_module.load(target).paths.inbox.is_relative_to(tmp_path / "srv")


def test_init_config_force_replaces_a_symlink_instead_of_writing_through_it(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not yours\n", encoding="utf-8")
    target = tmp_path / "config.toml"
    target.symlink_to(elsewhere)
    argv = ["init-config", "--output", str(target), "--root", str(tmp_path / "srv"), "--force"]

    assert main(argv) == 0

    assert elsewhere.read_text(encoding="utf-8") == "not yours\n"
    assert not target.is_symlink()
    assert config_module.load(target).paths.inbox == tmp_path / "srv" / "inbox"


# --- instance names become path parts under paths.state ----------------------------------------


@pytest.mark.parametrize(
    "name", ["../escape", "a/b", ".hidden", "-dash", "x" * 101, "sp ace", "tab\tname", "é"]
)
def test_an_unsafe_instance_name_in_the_config_is_refused_naming_the_key(
    tmp_path: Path, name: str
) -> None:
    document = tomllib.loads(render_default(tmp_path))
    document["instances"]["name"] = name

    with pytest.raises(ConfigError, match=r"^instances\.name: .*letters, digits"):
        _parse(document, tmp_path)


@pytest.mark.parametrize("name", ["gpu-box.example_1", "_x", "9" * 100])
def test_a_safe_instance_name_is_accepted(tmp_path: Path, name: str) -> None:
    document = tomllib.loads(render_default(tmp_path))
    document["instances"]["name"] = name

    assert _parse(document, tmp_path).instances.name == name


@pytest.mark.parametrize("name", ["../escape", "/abs", "", ".."])
def test_run_refuses_an_unsafe_instance_option_with_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    path = write_config(tmp_path)

    code = main(["--config", str(path), "run", "--instance", name])

    line = _one_line(capsys.readouterr().err)
    assert code == 2
    assert "--instance" in line and "letters, digits" in line
    assert not (tmp_path / "state").exists()
    assert not (tmp_path / "escape").exists()


# --- backends declare what they can do; reading that stays cheap --------------------------------


def test_the_backends_declare_their_capabilities_on_the_class() -> None:
    from sir_convert_a_lot.backends import capabilities_of
    from sir_convert_a_lot.backends.docling import DoclingBackend
    from sir_convert_a_lot.backends.pymupdf import PyMuPDFBackend

    assert capabilities_of("pymupdf") is PyMuPDFBackend.capabilities
    assert capabilities_of("docling") is DoclingBackend.capabilities
    assert PyMuPDFBackend.capabilities.devices == {"cpu"}
    assert not PyMuPDFBackend.capabilities.ocr and not PyMuPDFBackend.capabilities.models
    assert DoclingBackend.capabilities.gpu and DoclingBackend.capabilities.ocr


_LIGHT_IMPORT_SCRIPT = """
import sys, tomllib
from pathlib import Path
from sir_convert_a_lot import config
import sir_convert_a_lot.service.daemon, sir_convert_a_lot.engine.policy
document = tomllib.loads(config.render_default(Path("/srv/x")))
document["profiles"] = {"fast": {"backend_strategy": "pymupdf", "ocr_mode": "off",
                                 "acceleration_policy": "cpu_only"}}
config.parse(document, base_dir=Path("/etc"))
print(sorted(m for m in ("docling", "torch", "pymupdf", "pymupdf4llm") if m in sys.modules))
"""


@pytest.mark.slow
def test_reading_the_config_and_the_capabilities_imports_no_converter_library() -> None:
    # The daemon process asks the backend classes what they can do; the worker alone may pay
    # for docling, torch or pymupdf. A fresh interpreter, so no earlier test's import counts.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _LIGHT_IMPORT_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )

    assert done.stdout.strip() == "[]", done.stdout + done.stderr
