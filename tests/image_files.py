"""Image files for tests that PIL would refuse to make: a PNG header claiming a huge size."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def huge_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid PNG signature and IHDR for a huge image, with a tiny (incomplete) IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path
