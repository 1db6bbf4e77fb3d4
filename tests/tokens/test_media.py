"""Image and PDF estimates against hand-computed values, on headers built byte by byte."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from anthropic_gateway.tokens import media


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\x00" * 4 + b"IDAT" * 50


def jpeg(width: int, height: int, app_padding: int = 0) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    parts = [b"\xff\xd8", app0]
    if app_padding:
        # A large EXIF segment pushes the frame header beyond the first decoded prefix.
        parts.append(b"\xff\xe1" + struct.pack(">H", app_padding + 2) + b"E" * app_padding)
    sof = (
        b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    )
    parts += [b"\xff\xff", sof, b"\xff\xda\x00\x0c" + b"\x00" * 10 + b"\xff\xd9"]
    return b"".join(parts)


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\xf7\x00\x00" + b"\x00" * 40


def webp_vp8x(width: int, height: int) -> bytes:
    payload = b"VP8X" + struct.pack("<I", 10) + b"\x10\x00\x00\x00"
    payload += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(payload) + 4) + b"WEBP" + payload


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    payload = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", bits)
    return b"RIFF" + struct.pack("<I", len(payload) + 4) + b"WEBP" + payload


def webp_vp8(width: int, height: int) -> bytes:
    frame = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    payload = b"VP8 " + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", len(payload) + 4) + b"WEBP" + payload


@pytest.mark.parametrize("build", [png, jpeg, gif, webp_vp8x, webp_vp8l, webp_vp8])
def test_header_sizes(build: object) -> None:
    assert callable(build)
    assert media.image_size_from_base64(_b64(build(640, 480))) == (640, 480)


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [
        (200, 100, 27),  # 20,000 / 750 = 26.67 -> 27, no resize
        (1092, 1092, 1590),  # Anthropic's largest unresized square: 1,192,464 / 750 = 1589.95
        # long edge: scale 1568/2000 -> 1568 x 392 = 614,656 px -> 819.54 -> 820
        (2000, 500, 820),
        # pixels: scale sqrt(1.2e6 / 6e6) = 0.44721 -> 1341 x 894 = 1,198,854 px -> 1598.47 -> 1599
        (3000, 2000, 1599),
        (1, 1, 1),
    ],
)
def test_image_tokens_for_size(width: int, height: int, tokens: int) -> None:
    assert media.image_tokens_for_size(width, height) == tokens


@pytest.mark.parametrize("build", [png, jpeg, gif, webp_vp8x])
def test_base64_image_tokens(build: object) -> None:
    assert callable(build)
    assert media.base64_image_tokens(_b64(build(3000, 2000))) == 1599


def test_jpeg_frame_header_after_a_large_exif_segment() -> None:
    data = jpeg(800, 600, app_padding=60_000)
    assert media.image_size_from_base64(_b64(data)) == (800, 600)
    assert media.base64_image_tokens(_b64(data)) == 640  # 480,000 / 750


def test_line_wrapped_base64() -> None:
    data = base64.encodebytes(png(300, 200)).decode()  # MIME style, 76 characters a line
    assert "\n" in data
    assert media.base64_image_tokens(data) == 80  # 60,000 / 750


def test_unreadable_image_gets_the_fixed_estimate() -> None:
    assert media.base64_image_tokens(_b64(b"not an image at all" * 10)) == media.IMAGE_FALLBACK_TOKENS == 1600
    assert media.base64_image_tokens(_b64(b"\xff\xd8\xff\xe0")) == 1600  # truncated JPEG


def pdf(page_count: int) -> bytes:
    kids = " ".join(f"{3 + i} 0 R" for i in range(page_count))
    objects = [
        b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj",
        f"2 0 obj << /Type /Pages /Kids [{kids}] /Count {page_count} >> endobj".encode(),
    ]
    objects += [
        f"{3 + i} 0 obj << /Type/Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj".encode()
        for i in range(page_count)
    ]
    return b"%PDF-1.4\n" + b"\n".join(objects) + b"\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.mark.parametrize("pages", [1, 3, 12])
def test_pdf_pages(pages: int) -> None:
    assert media.pdf_page_count(pdf(pages)) == pages
    assert media.base64_pdf_tokens(_b64(pdf(pages))) == pages * 3100


def test_pdf_pages_inside_compressed_object_streams() -> None:
    inner = b"<< /Type /Pages /Kids [4 0 R 5 0 R] /Count 2 >> << /Type /Page >> << /Type /Page >>"
    stream = zlib.compress(inner)
    data = b"%PDF-1.5\n3 0 obj << /Type /ObjStm /Filter /FlateDecode >> stream\n" + stream + b"\nendstream\n"
    assert media.pdf_page_count(data) == 2


def test_pdf_without_page_objects_uses_count_then_one() -> None:
    assert media.pdf_page_count(b"%PDF-1.4\n<< /Type /Pages /Count 7 >>") == 7
    assert media.pdf_page_count(b"%PDF-1.4\n") == 1


def test_unterminated_pdf_streams_are_scanned_linearly() -> None:
    assert media.pdf_page_count(b"%PDF-1.4 " + b"stream\n" * 40_000) == 1


def test_a_huge_pdf_count_is_capped() -> None:
    assert media.pdf_page_count(b"%PDF-1.4 /Count " + b"9" * 5_000) == 1
    assert media.pdf_page_count(b"%PDF-1.4 /Type /Pages /Count 12") == 12
