"""The operator's reference says what the daemon does: every config key with its true default."""

from __future__ import annotations

import re

import tomli_w

from sir_convert_a_lot.config import INSTANCE_NAME_RULE, SCHEMA, render_default
from tests.helpers import REPO

REFERENCE = REPO / "docs" / "configuration.md"


def _documented() -> dict[str, str]:
    """``section.key`` -> the default column, from the reference's tables."""
    rows: dict[str, str] = {}
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"`[a-z_]+\.[a-z_]+`", cells[0]):
            rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def _as_toml(value: object) -> str:
    if isinstance(value, list):  # on one line, as the table writes it
        return "[" + ", ".join(_as_toml(member) for member in value) + "]"
    return tomli_w.dumps({"v": value}).removeprefix("v = ").strip()


def test_every_config_key_is_documented_with_its_default() -> None:
    documented = _documented()
    known = {
        f"{section}.{name}": key.default
        for section, keys in SCHEMA.items()
        for name, key in keys.items()
    }
    assert sorted(documented) == sorted(known), "docs/configuration.md and the schema differ"
    wrong = {
        k: (documented[k], _as_toml(v)) for k, v in known.items() if documented[k] != _as_toml(v)
    }
    assert wrong == {}


PACKAGE = REPO / "daemon" / "sir_convert_a_lot"
DESIGN = REPO / "docs" / "design.md"


def _modules() -> set[str]:
    """Every module of the package as ``folder/name``, packages' ``__init__`` left out."""
    return {
        path.relative_to(PACKAGE).with_suffix("").as_posix()
        for path in PACKAGE.rglob("*.py")
        if not path.name.startswith("__")
    }


def test_the_design_module_table_names_every_module_and_no_gone_one() -> None:
    # A newcomer finds each module in design.md's table; a row for a module that was moved or
    # removed would send them looking for it.
    rows = set()
    for line in DESIGN.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and re.fullmatch(r"`[a-z_/*]+`", cells[0]):
            rows.add(cells[0].strip("`"))
    modules = _modules()
    grouped = {row.removesuffix("/*") for row in rows if row.endswith("/*")}
    missing = {m for m in modules if m not in rows and m.rpartition("/")[0] not in grouped}
    stale = {r for r in rows - modules if r.removesuffix("/*") not in grouped}
    assert missing == set(), "modules design.md does not list"
    assert {r for r in stale if not r.endswith("/*")} == set(), "rows for modules that are gone"


OPERATIONS = REPO / "docs" / "operations.md"


def test_the_operators_guide_quotes_the_instance_name_rule() -> None:
    # The guide once said "at most 64, starting with a letter or digit" long after the rule
    # became 100 and allowed '_'; quoting the rule's own text keeps the two from drifting.
    text = " ".join(OPERATIONS.read_text(encoding="utf-8").split())
    assert INSTANCE_NAME_RULE in text


def _section(title: str) -> str:
    """The text of the operators' guide under ``## title``, up to the next ``## `` heading,
    with its line breaks folded."""
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return " ".join(text[start : end if end >= 0 else None].split())


DECISIONS = "/etc/sir-convert/decisions/"


def test_site_decision_records_live_beside_the_config_where_install_backup_and_uninstall_say() -> (
    None
):
    # The guide once said "write an ADR in docs/decisions/": inside /opt/sir-convert on a server,
    # rewritten by a git pull and deleted by the uninstall, and the backup never said where.
    assert "install -d -m 0755 /etc/sir-convert/decisions" in _section("Install")
    assert DECISIONS in _section("Backups and restores")
    assert DECISIONS in _section("Uninstall")
    lifting = _section("Lifting the GPU-first lock")
    assert f'decision_record = "{DECISIONS}' in lifting
    assert "write an ADR in `docs/decisions/`" not in lifting
    assert DECISIONS in REFERENCE.read_text(encoding="utf-8")
    assert DECISIONS in render_default()


def _commands(title: str) -> list[str]:
    """The command lines in the code blocks of the guide's ``## title`` section, in order."""
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text[start:end], flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


SYSTEMD = REPO / "systemd"


def test_the_uninstall_leaves_no_user_group_or_folder_of_the_install_behind() -> None:
    # The steps once left the service group (still listing the share users) and /srv/sir-convert
    # owned by a uid that no longer existed.
    commands = _commands("Uninstall")
    last_user = max(i for i, c in enumerate(commands) if c.startswith("userdel "))
    sysusers = (SYSTEMD / "sir-convert.sysusers.conf").read_text(encoding="utf-8")
    for name in re.findall(r"^u\s+(\S+)", sysusers, flags=re.MULTILINE):
        assert f"userdel {name}" in commands
        (group,) = [i for i, c in enumerate(commands) if re.search(rf"\bgroupdel {name}$", c)]
        assert group > last_user  # the user's own group goes with it only when no one shares it
    data = [
        i
        for i, c in enumerate(commands)
        if re.fullmatch(r"(rm -rf|.*chown -R root:root) /srv/sir-convert", c)
    ]
    assert len(data) == 2 and max(data) < last_user  # removed, or handed to root, before
    tmpfiles = (SYSTEMD / "sir-convert.tmpfiles.conf").read_text(encoding="utf-8")
    removed = {w for c in commands if c.startswith("rm ") for w in c.split() if w[0] == "/"}

    def gone(path: str) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in removed)

    for path in re.findall(r"^d\s+(\S+)", tmpfiles, flags=re.MULTILINE):
        assert gone(path), f"{path} (made by the tmpfiles.d file) is never removed"
    for installed in _commands("Install"):
        if installed.startswith("cp systemd/"):
            target = installed.split()[-1]
            assert gone(target), f"{target} (copied at install) is never removed"


def test_the_hooks_sandbox_notes_name_what_the_unit_lets_a_hook_write() -> None:
    # A hook runs inside the unit: the guide must say where it may write as the unit says it.
    unit = (SYSTEMD / "sir-convert@.service").read_text(encoding="utf-8")
    writable = [
        path
        for line in unit.splitlines()
        if line.startswith("ReadWritePaths=")
        for path in line.partition("=")[2].split()
    ]
    hooks = _section("Hooks")
    assert writable and [path for path in writable if path not in hooks] == []
    for setting in ("ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"):
        assert setting in unit and setting in hooks
