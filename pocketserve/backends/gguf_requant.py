"""Re-encode a GGUF's tensors into a quantization that llama.cpp's CPU kernels batch well.

Why: for a matrix product over two or more tokens (a prompt, or one step of several sequences)
llama.cpp's CPU backend uses llamafile's tinyBLAS kernels, which take F32, F16, Q8_0, Q4_0, Q5_0
and IQ4_NL weights but not Q4_1; a Q4_1 model falls back to one dot product per row and token,
so it gains little from batching. Re-encoding Q4_1 as Q8_0 keeps the numbers nearly unchanged
(8-bit steps are far finer than the 4-bit ones they hold) and gets the fast kernels.
The copy is cached in `cache_dir`, one file per source file and mapping, and rebuilt only when
the source file changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("pocketserve.gguf")

# Bump when the output for the same input would change, so old cache files are not reused.
_FORMAT_VERSION = 1


def cached_path(source: Path, mapping: dict[str, str], cache_dir: Path) -> Path:
    """Where the re-encoded copy of `source` lives; the name changes when the source does."""
    stat = source.stat()
    key = repr((str(source.resolve()), stat.st_size, stat.st_mtime_ns, sorted(mapping.items()),
                _FORMAT_VERSION))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    targets = "-".join(sorted({t.lower() for t in mapping.values()}))
    return cache_dir / f"{source.stem}.{digest}.{targets}.gguf"


def requantize(source: Path, mapping: dict[str, str], cache_dir: Path) -> Path:
    """The path of a GGUF whose tensors of each type in `mapping` are re-encoded as its value.

    Builds it on first use (seconds for a small model) and reuses it afterwards. Written to a
    temporary name and renamed, so two processes building it at once never read half a file.
    """
    target = cached_path(source, mapping, cache_dir)
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=".requant-", suffix=".gguf")
    os.close(fd)
    try:
        converted = _convert(source, Path(tmp_name), mapping)
        os.chmod(tmp_name, 0o644)  # mkstemp's 0600 is for the half-written file only
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    log.info("re-encoded %d tensors of %s as %s into %s", converted, source.name,
             mapping, target)
    return target


def _convert(source: Path, dest: Path, mapping: dict[str, str]) -> int:
    import gguf
    from gguf import quants

    types = {gguf.GGMLQuantizationType[k]: gguf.GGMLQuantizationType[v]
             for k, v in mapping.items()}
    reader = gguf.GGUFReader(source)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dest, arch=arch)
    for field in reader.fields.values():
        # The writer adds the architecture itself; GGUF.* are the reader's own header fields.
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    converted = 0
    for tensor in reader.tensors:
        data: Any = tensor.data
        kind = tensor.tensor_type
        if kind in types:
            data = quants.quantize(quants.dequantize(data, kind), types[kind])
            kind = types[kind]
            converted += 1
        writer.add_tensor(tensor.name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return converted
