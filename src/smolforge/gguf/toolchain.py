"""Where llama.cpp comes from: one source distribution for the converter, gguf-py and the library.

`llama-cpp-python` (pinned in smolforge's `gguf` extra) is published on PyPI as a source distribution
that carries a complete llama.cpp. pip builds it (cmake and a C++ compiler; about 7 minutes on 2
cores) into `libllama`, which gives smolforge `llama_model_quantize` (the K-quants) and an inference
engine for the parity checks. The same archive holds llama.cpp's own HF -> GGUF converter
(`convert_hf_to_gguf.py`, its `conversion/` package and the gguf-py it is written against), which
pip does not install: `python -m smolforge.gguf.toolchain install` extracts those files from that
sdist into `<prefix>/share/smolforge/llama.cpp/` (and builds the library too when it is missing).
Converter, gguf-py and library are therefore always the same llama.cpp commit. `SMOLFORGE_LLAMA_CPP`
may point at another llama.cpp checkout's root instead.

Nothing here imports torch; the converter runs in its own process (its gguf-py is newer than the
`gguf` release smolforge reads files with, so the two never share a process).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from smolforge.errors import SmolforgeError

DIST = "llama-cpp-python"
LLAMA_CPP_PYTHON = "0.3.36"
CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
MARKER = "smolforge_llama_cpp.json"
ENV_OVERRIDE = "SMOLFORGE_LLAMA_CPP"
BUILD_ARGS = "-DLLAVA_BUILD=OFF"  # the multimodal library is not needed: ~20% less to compile


def pinned_version() -> str:
    """The llama-cpp-python version smolforge builds on (the same pin as pyproject.toml's `gguf` extra; a test
    checks that they agree)."""
    return LLAMA_CPP_PYTHON


def _install_hint() -> str:
    return (f"Install it once with `make gguf` in a smolforge checkout, or `pip install 'smolforge[gguf]'` then "
            f"`python -m smolforge.gguf.toolchain install` (builds llama.cpp from {DIST} {pinned_version()}'s source "
            "distribution on PyPI: needs cmake and a C++ compiler, about 7 minutes on 2 cores).")


def default_converter_dir() -> Path:
    return Path(sys.prefix) / "share" / "smolforge" / "llama.cpp"


@dataclass(frozen=True)
class Toolchain:
    """llama.cpp's converter folder and the llama-cpp-python library, checked to be present."""

    converter_dir: Path
    version: str  # llama-cpp-python version both come from
    source: str  # how the converter got here

    @property
    def converter(self) -> Path:
        return self.converter_dir / "convert_hf_to_gguf.py"

    def describe(self) -> dict[str, str]:
        return {"llama_cpp_python": self.version, "converter": str(self.converter), "converter_source": self.source}


def _library_version() -> str | None:
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return None


def find() -> Toolchain:
    """The installed toolchain; SmolforgeError naming the missing part and the install command otherwise."""
    override = os.environ.get(ENV_OVERRIDE)
    lib = _library_version()
    if lib is None:
        raise SmolforgeError(f"GGUF export needs llama.cpp ({DIST}), which is not installed. {_install_hint()}")
    if override:
        folder = Path(override)
        if not (folder / "convert_hf_to_gguf.py").is_file():
            raise SmolforgeError(f"{ENV_OVERRIDE}={override}: no convert_hf_to_gguf.py there. Point it at a llama.cpp "
                                 "checkout's root, or unset it to use the converter smolforge installs.")
        return Toolchain(folder, lib, f"{ENV_OVERRIDE}={override}")
    folder = default_converter_dir()
    marker = folder / MARKER
    if not marker.is_file():
        raise SmolforgeError(f"GGUF export needs llama.cpp's converter, which is not installed in {folder}. "
                             f"{_install_hint()}")
    recorded = json.loads(marker.read_text(encoding="utf-8")).get("version")
    if recorded != lib:
        raise SmolforgeError(f"llama.cpp's converter in {folder} comes from {DIST} {recorded}, but the installed "
                             f"library is {lib}: they must be the same llama.cpp. {_install_hint()}")
    return Toolchain(folder, lib, f"{DIST} {recorded} source distribution")


@cache
def supported_architectures(converter_dir: Path) -> frozenset[str]:
    """The Hugging Face architectures the converter registers (its TEXT_MODEL_MAP), read without importing it."""
    tree = ast.parse((converter_dir / "conversion" / "__init__.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP" and isinstance(node.value, ast.Dict):
            return frozenset(ast.literal_eval(node.value))
    raise SmolforgeError(f"{converter_dir}: conversion/__init__.py has no TEXT_MODEL_MAP; this llama.cpp is not "
                         f"one smolforge knows. {_install_hint()}")


# ---------------------------------------------------------------- install


def _pip(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env={**os.environ, **(env or {})})


def _extract_converter(sdist: Path, dest: Path, version: str) -> None:
    """Copy llama.cpp's converter files out of the sdist into `dest`, replacing what was there."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=dest.parent))
    with tarfile.open(sdist) as tar:
        root = tar.getnames()[0].split("/")[0]
        prefix = f"{root}/vendor/llama.cpp/"
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)
                   and any(m.name[len(prefix):] == f or (f.endswith("/") and m.name[len(prefix):].startswith(f))
                           for f in CONVERTER_FILES) and (m.isfile() or m.isdir())]
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(tmp, members=members, filter="data")
    (tmp / MARKER).write_text(json.dumps({"version": version, "sdist": sdist.name}) + "\n", encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def install(dest: Path | None = None) -> Toolchain:
    """Download the pinned sdist from PyPI (pip), build the library from it when it is missing, extract the
    converter from the same file."""
    version = pinned_version()
    dest = dest or default_converter_dir()
    with tempfile.TemporaryDirectory(prefix="smolforge-llama-cpp-") as work:
        _pip("download", "--no-deps", "--no-binary", ":all:", f"{DIST}=={version}", "-d", work)
        sdist = next(Path(work).glob("*.tar.gz"))
        if _library_version() != version:
            _pip("install", "--no-deps", str(sdist), env={"CMAKE_ARGS": os.environ.get("CMAKE_ARGS", BUILD_ARGS)})
        _extract_converter(sdist, dest, version)
    return find()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["install"]:
        tc = install()
        print(f"llama.cpp converter and library ready: {tc.converter} ({DIST} {tc.version})")
        return 0
    try:
        tc = find()
    except SmolforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(tc.describe(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
