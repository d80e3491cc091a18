"""Hostile inputs for tests: files whose headers or metadata lie, made in a few bytes."""

import struct
import zlib

from safetensors import safe_open
from safetensors.torch import load_file, save_file


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` greyscale pixels but holds almost no data: what a
    decompression bomb looks like to a reader that trusts the header (a few bytes, nothing allocated)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def relabel(src, dst, **meta) -> None:
    """Copy a classifier file with some of its metadata replaced (tensors unchanged): a file that lies."""
    with safe_open(str(src), framework="pt") as f:
        old = f.metadata()
    save_file(load_file(str(src)), str(dst), metadata={**old, **{k: str(v) for k, v in meta.items()}})
