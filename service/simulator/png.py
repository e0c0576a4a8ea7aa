"""Tiny real PNG images for the simulator: an encoder on zlib + struct, and a picture per name
so that every generated image differs and a client can check it really got an image.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(width: int, height: int, rgb: bytes) -> bytes:
    """Encode `rgb` (rows top to bottom, 3 bytes a pixel) as an 8-bit truecolour PNG."""
    stride = width * 3
    if width <= 0 or height <= 0 or len(rgb) != stride * height:
        raise ValueError("rgb must hold width * height * 3 bytes")
    # Each scanline starts with its filter type; 0 (none) keeps the encoder trivial.
    raw = b"".join(b"\x00" + rgb[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw, 9)),
            _chunk(b"IEND", b""),
        )
    )


@functools.lru_cache(maxsize=256)
def image_for(name: str, *, size: int = 64, tiles: int = 1) -> bytes:
    """A `size` x `size` PNG of `tiles` x `tiles` shaded squares, coloured from `name`'s hash."""
    digest = hashlib.sha256(name.encode()).digest()
    colours = [digest[3 * i : 3 * i + 3] for i in range(tiles * tiles)]
    tile = max(1, size // tiles)
    rows = []
    for y in range(size):
        shade = 0.55 + 0.45 * (y % tile) / tile
        row = bytearray()
        for x in range(size):
            colour = colours[min(y // tile, tiles - 1) * tiles + min(x // tile, tiles - 1)]
            row += bytes(int(channel * shade) for channel in colour)
        rows.append(bytes(row))
    return encode_png(size, size, b"".join(rows))


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
