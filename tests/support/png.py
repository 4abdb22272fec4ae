"""Just enough PNG for tests: decode 8-bit RGB/RGBA screenshots, count colours, crop to a new PNG.

Standard library only (zlib, struct): a browser screenshot is checked for
being more than a blank page without pulling an imaging library into the
test dependencies. Rows filtered "Up" (most of a screenshot) are undone with
one big-integer addition per row (byte lanes, no carries between them), the
others byte by byte.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> bytes per pixel at bit depth 8


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    pixels: bytes  # rows top to bottom, each width * channels bytes

    def rgb_planes(self) -> tuple[bytes, bytes, bytes]:
        c = self.channels
        return self.pixels[0::c], self.pixels[1::c], self.pixels[2::c]

    def count(self, rgb: tuple[int, int, int]) -> int:
        """How many pixels are exactly this colour."""
        mask = -1
        for plane, value in zip(self.rgb_planes(), rgb):
            table = bytes(1 if i == value else 0 for i in range(256))
            mask &= int.from_bytes(plane.translate(table), "big")
        return mask.bit_count() if mask > 0 else 0

    def crop(self, left: int, top: int, width: int, height: int) -> Image:
        c = self.channels
        stride = self.width * c
        rows = [self.pixels[(top + y) * stride + left * c : (top + y) * stride + (left + width) * c] for y in range(height)]
        return Image(width, height, c, b"".join(rows))

    def encode(self) -> bytes:
        stride = self.width * self.channels
        raw = b"".join(b"\x00" + self.pixels[y * stride : (y + 1) * stride] for y in range(self.height))
        colour_type = {3: 2, 4: 6}[self.channels]
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, colour_type, 0, 0, 0)
        return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def decode(data: bytes) -> Image:
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    pos, idat, header = len(SIGNATURE), [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour_type, _, _, interlace = header
    if depth != 8 or colour_type not in _CHANNELS or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}, interlace {interlace}")
    bpp = _CHANNELS[colour_type]
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    lanes_low = int.from_bytes(b"\x7f" * stride, "big")
    lanes_high = int.from_bytes(b"\x80" * stride, "big")
    out = bytearray()
    prev = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], raw[start + 1 : start + 1 + stride]
        if kind == 0:
            cur = row
        elif kind == 2:  # Up: bytewise (row + prev) mod 256, every lane at once
            a, b = int.from_bytes(row, "big"), int.from_bytes(prev, "big")
            cur = (((a & lanes_low) + (b & lanes_low)) ^ ((a ^ b) & lanes_high)).to_bytes(stride, "big")
        else:
            cur = _unfilter(kind, row, prev, bpp)
        out += cur
        prev = cur
    return Image(width, height, bpp, bytes(out))


def _unfilter(kind: int, row: bytes, prev: bytes, bpp: int) -> bytes:
    cur = bytearray(row)
    n = len(cur)
    if kind == 1:  # Sub
        for i in range(bpp, n):
            cur[i] = (cur[i] + cur[i - bpp]) & 0xFF
    elif kind == 3:  # Average
        for i in range(n):
            left = cur[i - bpp] if i >= bpp else 0
            cur[i] = (cur[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(n):
            b = prev[i]
            if i >= bpp:
                a, c = cur[i - bpp], prev[i - bpp]
            else:
                a = c = 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    else:
        raise ValueError(f"bad PNG filter type {kind}")
    return bytes(cur)


def read(path: str | Path) -> Image:
    return decode(Path(path).read_bytes())
