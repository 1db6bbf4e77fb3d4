"""Token estimates for images and PDFs, from their headers and bytes; pixels are never decoded.

Images (Anthropic's vision guide): an image costs about ``width × height / 750`` tokens after the
resize Anthropic applies to large images. The exact rule used here:

1. read ``(w, h)`` from the PNG / JPEG / GIF / WebP header (the format is sniffed from the bytes,
   since clients mislabel ``media_type``); only the first few KB of base64 are decoded;
2. ``scale = min(1, 1568 / max(w, h), sqrt(1_200_000 / (w × h)))`` - long edge at most 1568 px and at
   most ~1,600 tokens (Anthropic's table of sizes that are not resized tops out at 1092×1092 = 1.19 MP);
3. ``w' = max(1, floor(w × scale))``, same for ``h'``; tokens = ``ceil(w' × h' / 750)``.

URL and file images, and images whose header cannot be read, count :data:`IMAGE_FALLBACK_TOKENS`:
the most any image can cost after the resize, so context accounting errs on the safe side.

PDFs (Anthropic's PDF guide: "1,500-3,000 tokens per page" of text, plus each page is also given to
the model as an image): pages × :data:`PDF_TOKENS_PER_PAGE` (1,500 text + 1,600 page image). Pages are
the ``/Type /Page`` objects in the file (``/Pages`` tree nodes excluded), also looked for inside
compressed object streams; failing that the largest ``/Count``; failing that one page. URL and file
PDFs, whose size is unknown, count as one page.
"""

from __future__ import annotations

import binascii
import math
import re
import struct
import zlib

IMAGE_TOKENS_PER_PIXEL_DIVISOR = 750
IMAGE_MAX_LONG_EDGE = 1568
IMAGE_MAX_PIXELS = 1_200_000
IMAGE_FALLBACK_TOKENS = 1600
PDF_TOKENS_PER_PAGE = 1500 + 1600
UNKNOWN_DOCUMENT_TOKENS = PDF_TOKENS_PER_PAGE

# Base64 characters decoded per attempt at reading a header. Most headers sit in the first bytes; a
# JPEG's size marker can follow a large EXIF/ICC segment, hence the later, larger attempts.
_HEADER_PREFIXES = (4096, 96 * 1024, 1024 * 1024)


def image_tokens_for_size(width: int, height: int) -> int:
    if width <= 0 or height <= 0:
        return IMAGE_FALLBACK_TOKENS
    scale = min(
        1.0,
        IMAGE_MAX_LONG_EDGE / max(width, height),
        math.sqrt(IMAGE_MAX_PIXELS / (width * height)),
    )
    if scale < 1.0:
        width = max(1, math.floor(width * scale))
        height = max(1, math.floor(height * scale))
    return math.ceil(width * height / IMAGE_TOKENS_PER_PIXEL_DIVISOR)


# Base64 text as a str or bytes-like (the schema layer hands over a view of the raw request bytes).
Base64Text = str | bytes | memoryview


def base64_image_tokens(data: Base64Text) -> int:
    size = image_size_from_base64(data)
    return IMAGE_FALLBACK_TOKENS if size is None else image_tokens_for_size(*size)


def image_size_from_base64(data: Base64Text) -> tuple[int, int] | None:
    for chars in (*_HEADER_PREFIXES, len(data)):
        head = _decode_prefix(data, chars)
        size = image_size(head)
        if size is not None or chars >= len(data):
            return size
        if size is None and not _may_need_more(head):
            return None
    return None


def _decode_prefix(data: Base64Text, chars: int) -> bytes:
    part = data[:chars]
    chunk = part.encode("ascii", "replace") if isinstance(part, str) else bytes(part)
    if b"\n" in chunk or b"\r" in chunk or b" " in chunk:
        chunk = b"".join(chunk.split())
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        return binascii.a2b_base64(chunk)
    except binascii.Error:
        return b""


def _may_need_more(head: bytes) -> bool:
    # Only a JPEG can keep its size far from the start; other formats either parse or never will.
    return head.startswith(b"\xff\xd8")


def image_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the start of a PNG, GIF, WebP or JPEG file; None if not readable."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return width, height
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


# SOF markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field.
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    pos = 2
    end = len(head)
    while pos + 4 <= end:
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data: no frame header came first
            return None
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > end:
                return None
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


# --- PDF ---------------------------------------------------------------------------------------

# "/Type /Page" but not "/Type /Pages"; PDF names may be followed directly by a delimiter.
_PAGE_RE = re.compile(rb"/Type\s*/Page(?![A-Za-z0-9#])")
_COUNT_RE = re.compile(rb"/Count\s+(\d{1,6})(?!\d)")
_MAX_INFLATED = 64 * 1024 * 1024
_MAX_STREAMS = 4096


def base64_pdf_tokens(data: Base64Text) -> int:
    try:
        pdf = binascii.a2b_base64(data)
    except binascii.Error:
        return UNKNOWN_DOCUMENT_TOKENS
    return pdf_page_count(pdf) * PDF_TOKENS_PER_PAGE


def pdf_page_count(pdf: bytes) -> int:
    pages = len(_PAGE_RE.findall(pdf))
    counts = [int(c) for c in _COUNT_RE.findall(pdf)]
    if pages == 0 and not counts:
        # PDF 1.5+ may keep page objects inside compressed object streams.
        for inflated in _inflated_streams(pdf):
            pages += len(_PAGE_RE.findall(inflated))
            counts += [int(c) for c in _COUNT_RE.findall(inflated)]
    if pages:
        return pages
    return max(max(counts, default=0), 1)


def _inflated_streams(pdf: bytes) -> list[bytes]:
    out: list[bytes] = []
    budget = _MAX_INFLATED
    # A linear walk over stream ... endstream pairs: a regex with a lazy .*? rescanned the rest of the
    # file for every unterminated `stream` (a crafted 140 KB PDF took 15 s).
    at = 0
    for _ in range(_MAX_STREAMS):
        start = pdf.find(b"stream", at)
        if start == -1:
            break
        end = pdf.find(b"endstream", start + 6)
        if end == -1:
            break
        at = end + 9
        body = pdf[start + 6:end].lstrip(b"\r\n")
        try:
            data = zlib.decompressobj().decompress(body, budget)
        except zlib.error:
            continue
        budget -= len(data)
        out.append(data)
        if budget <= 0:  # a decompression bomb gets no more attention than this
            break
    return out
