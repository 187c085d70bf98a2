"""Build the bundle that lets tools/gpu-check run on a lent device machine.

Usage (here, from the repository root; pip must reach the package index):

    tools/gpu-bundle [--python-version 3.12] [--with-ray] [--output .gpu-bundle]

The device has Python 3.12 with torch, transformers, safetensors and the rest of its image's
packages (``DEVICE_HAS``), but not docling, PyMuPDF, pydantic, Ray and the others the daemon
needs; it reaches no index, and one call carries at most 64 MiB. This tool follows the needs of
the project's own dependencies (pyproject.toml, plus Ray with ``--with-ray``) through each
wheel's metadata, pinned by requirements/constraints.txt, stops at what the device has, downloads
those wheels for the device (``pip download --no-deps --only-binary=:all:``) into
OUTPUT/wheels-X.Y/, and cuts them into OUTPUT/part-1/, part-2/, ... (tools/gpu_bundle_parts.py),
each small enough to carry beside the working tree. docs/gpu-check.md gives the device calls;
tools/gpu_bundle_install.py puts the parts back together there.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from gpu_bundle_deps import Wheel, marker_environment, needs, pins, read_wheel
from gpu_bundle_parts import MIB, PART_LIMIT, TRAVEL_LIMIT, oversize, write_parts
from toolkit import REPO

# The device image's Python packages ('cuda' image, package list read on 2026-11-17): these are
# not carried, and neither is anything they need. torchvision is among them on purpose: its
# compiled ops are built for one torch release, so it must be the image's, matching its torch.
DEVICE_HAS = frozenset(
    canonicalize_name(name)
    for name in """
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
    botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
    coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
    diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
    frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
    hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
    jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
    linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl
    meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
    narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti
    nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile
    nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
    nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime
    onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
    orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
    prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
    pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
    pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich
    sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
    sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
    statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
    tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
    torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
    typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
    """.split()  # noqa: SIM905
)
# Needed by a dependency's metadata but not by the GPU check: none since the check reads a scanned
# PDF with RapidOCR (its per-stage devices); kept so a later check can leave a package out.
LEAVE_OUT: dict[str, str] = {}
PLATFORMS = ["manylinux1_x86_64", "manylinux2014_x86_64", "linux_x86_64"] + [
    f"manylinux_2_{n}_x86_64" for n in range(5, 40)
]


def roots(pyproject: Path, with_ray: bool) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    if with_ray:
        lines += project["optional-dependencies"]["ray"]
    return [Requirement(line) for line in lines]


def download(wanted: dict[str, str], folder: Path, python_version: str) -> None:
    """Fetch one wheel per ``name==version`` for CPython ``python_version`` on x86-64 Linux."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--implementation", "cp"]
    command += ["--python-version", python_version, "--dest", str(folder)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += [f"{name}=={version}" for name, version in sorted(wanted.items())]
    subprocess.run(command, check=True)


def find_wheel(folder: Path, name: str, version: str) -> Path:
    for path in sorted(folder.glob("*.whl")):
        found, found_version, _build, _tags = parse_wheel_filename(path.name)
        if canonicalize_name(found) == name and found_version == Version(version):
            return path
    raise FileNotFoundError(f"no wheel of {name}=={version} in {folder}")


def resolve(
    start: list[Requirement], pinned: dict[str, str], folder: Path, python_version: str
) -> tuple[list[Wheel], dict[str, str]]:
    """The wheels the ``start`` requirements need on the device, following each wheel's
    metadata; also, by name, the device's packages they lean on (with what is asked of them)."""
    env = marker_environment(python_version)
    extras: dict[str, set[str]] = {}
    done: dict[str, frozenset[str]] = {}
    wheels: dict[str, Wheel] = {}
    leaned_on: dict[str, set[str]] = {}
    queue = list(start)
    while queue:
        for requirement in queue:
            name = canonicalize_name(requirement.name)
            if name in DEVICE_HAS:
                leaned_on.setdefault(name, set()).add(str(requirement.specifier) or "any")
            elif name not in LEAVE_OUT:
                extras.setdefault(name, set()).update(requirement.extras)
        todo = [n for n in extras if done.get(n) != frozenset(extras[n])]
        unpinned = sorted(n for n in todo if n not in pinned)
        if unpinned:
            raise SystemExit(f"gpu-bundle: not in requirements/constraints.txt: {unpinned}")
        fetch = {n: pinned[n] for n in todo if n not in wheels}
        if fetch:
            download(fetch, folder, python_version)
        queue = []
        for each in todo:
            wheel = wheels.get(each) or read_wheel(find_wheel(folder, each, pinned[each]))
            wheels[each] = wheel
            done[each] = frozenset(extras[each])
            queue += needs(wheel, extras[each], env)
    asked = {name: "; ".join(sorted(specs)) for name, specs in sorted(leaned_on.items())}
    return sorted(wheels.values(), key=lambda w: w.name), asked


def tree_bytes(repo: Path) -> int:
    """What a device call sends besides the carried parts: tracked files, untracked ones that
    git does not ignore, and a ``shared/`` folder, ignored or not."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    paths = {repo / name.decode() for name in listed if name}
    paths |= set((repo / "shared").rglob("*"))
    return sum(path.stat().st_size for path in paths if path.is_file() and not path.is_symlink())


def build(output: Path, python_version: str, with_ray: bool) -> dict[str, Any]:
    constraints = REPO / "requirements" / "constraints.txt"
    folder = output / f"wheels-{python_version}"
    wheels, leaned_on = resolve(
        roots(REPO / "pyproject.toml", with_ray), pins(constraints), folder, python_version
    )
    tree = tree_bytes(REPO)
    part_limit = min(PART_LIMIT, TRAVEL_LIMIT - tree - MIB // 2)
    files = sorted((w.path for w in wheels), key=lambda p: (-p.stat().st_size, p.name))
    info = {
        "python_version": python_version,
        "with_ray": with_ray,
        "constraints_sha256": hashlib.sha256(constraints.read_bytes()).hexdigest(),
        "packages": {w.name: w.version for w in wheels},
        "device_has_used": leaned_on,
        "left_out": LEAVE_OUT,
    }
    manifest = write_parts(files, output, info, part_limit)
    problems = oversize(output, tree, part_limit)
    if problems:
        raise SystemExit("gpu-bundle: " + "; ".join(problems))
    manifest["tree_bytes"] = tree
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default="3.12", help="the device's Python (X.Y)")
    parser.add_argument("--with-ray", action="store_true", help="add Ray, for gpu-check --ray")
    parser.add_argument("--output", type=Path, default=REPO / ".gpu-bundle")
    args = parser.parse_args()
    manifest = build(args.output.resolve(), args.python_version, args.with_ray)
    total = sum(entry["size"] for entry in manifest["files"])
    print(
        f"gpu-bundle: {len(manifest['files'])} wheels for Python {args.python_version}, "
        f"{total / MIB:.1f} MiB, in {manifest['parts']} parts of at most "
        f"{manifest['part_limit'] / MIB:.1f} MiB (the tree beside each: "
        f"{manifest['tree_bytes'] / MIB:.1f} MiB)"
    )
    for index in range(1, manifest["parts"] + 1):
        part = args.output / f"part-{index}"
        size = sum(p.stat().st_size for p in part.iterdir())
        print(f"  {part}: {size / MIB:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
