"""What a set of wheels needs, read from the wheels themselves: the build side
(tools/gpu_bundle.py) follows these needs to pick the wheels, and the device side
(tools/gpu_bundle_install.py) checks them against what the device has.

Needs ``packaging``, which the project's environment and the device image both have.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename


@dataclass
class Wheel:
    """One wheel's name, version and ``Requires-Dist`` lines."""

    path: Path
    name: str  # canonical
    version: str
    requires: list[str] = field(default_factory=list)


def read_wheel(path: Path) -> Wheel:
    name, version, _build, _tags = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as archive:
        metadata = next(
            n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)
        )
        text = archive.read(metadata).decode("utf-8")
    requires = []
    for line in text.split("\n\n", 1)[0].splitlines():  # headers end at the first blank line
        if line.startswith("Requires-Dist:"):
            requires.append(line.partition(":")[2].strip())
    return Wheel(path, canonicalize_name(name), str(version), requires)


def marker_environment(python_version: str | None = None) -> dict[str, str]:
    """The marker values of the machine the wheels are for: this interpreter, or CPython
    ``python_version`` on x86-64 Linux (the device)."""
    env = {key: str(value) for key, value in default_environment().items()}
    if python_version is not None:
        env.update(
            python_version=python_version,
            python_full_version=f"{python_version}.0",
            implementation_name="cpython",
            platform_python_implementation="CPython",
            sys_platform="linux",
            platform_system="Linux",
            platform_machine="x86_64",
            os_name="posix",
        )
    return env


def needs(wheel: Wheel, extras: set[str], env: dict[str, str]) -> list[Requirement]:
    """The requirements of ``wheel`` that apply on ``env`` when installed with ``extras``."""
    found = []
    for line in wheel.requires:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(
            marker.evaluate({**env, "extra": extra}) for extra in ("", *sorted(extras))
        ):
            found.append(requirement)
    return found


def pins(constraints: Path) -> dict[str, str]:
    """``name==version`` lines of a constraints file, by canonical name."""
    found: dict[str, str] = {}
    for raw in constraints.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            found[canonicalize_name(name.strip())] = version.strip()
    return found


def unmet(
    wheels: list[Wheel], env: dict[str, str], installed: Callable[[str], str | None]
) -> list[str]:
    """Needs of the bundle's wheels that neither the bundle nor ``installed`` (a name to its
    version on this machine, or None) meets: one line each, empty when all are met."""
    bundle = {w.name: w for w in wheels}
    extras: dict[str, set[str]] = {w.name: set() for w in wheels}
    changed = True
    while changed:  # extras asked for by a wheel's own extras' needs, until nothing new
        changed = False
        for wheel in wheels:
            for requirement in needs(wheel, extras[wheel.name], env):
                name = canonicalize_name(requirement.name)
                if name in extras and not requirement.extras <= extras[name]:
                    extras[name] |= requirement.extras
                    changed = True
    problems = []
    for wheel in wheels:
        for requirement in needs(wheel, extras[wheel.name], env):
            name = canonicalize_name(requirement.name)
            version = bundle[name].version if name in bundle else installed(name)
            if version is None:
                problems.append(f"missing: {requirement} (for {wheel.name})")
            elif not requirement.specifier.contains(version, prereleases=True):
                problems.append(f"version: {name} {version}, but {wheel.name} wants {requirement}")
    return sorted(set(problems))
