"""What a file is, from its first bytes: gzip and Parquet (which adam reads whatever the name), or a kind of
binary data no text reader should be fed (an image, an archive, an executable, a database).

Names lie (an ELF named .jsonl, a PNG named .txt, a gzip without .gz); the first bytes do not. A kind
that adam cannot read is refused in one line that names it and says what to do instead.
"""

from __future__ import annotations

import gzip
import io

HEAD_BYTES = 1 << 16  # how much of a file is looked at
GZIP = b"\x1f\x8b"
_TEXT = "give a .jsonl, .txt, .csv or .parquet file instead"
PARQUET = b"PAR1"

# (first bytes, what the file is, what to do); the first match wins
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x7fELF", "an ELF executable", "give the data file, not a program"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable", "give the data file, not a program"),
    (b"\xfe\xed\xfa\xcf", "a Mach-O executable", "give the data file, not a program"),
    (b"\xca\xfe\xba\xbe", "a Java class or Mach-O universal binary", "give the data file, not a program"),
    (b"\x00asm", "a WebAssembly module", "give the data file, not a program"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", _TEXT),
    (b"\xff\xd8\xff", "a JPEG image", _TEXT),
    (b"GIF87a", "a GIF image", _TEXT),
    (b"GIF89a", "a GIF image", _TEXT),
    (b"%PDF-", "a PDF document", "extract its text first (pdftotext FILE out.txt)"),
    (b"PK\x03\x04", "a ZIP archive (so are .xlsx, .docx and .jar files)", "unzip it, or export CSV from the sheet"),
    (b"PK\x05\x06", "an empty ZIP archive", "unzip it, or export CSV from the sheet"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it first (zstd -d FILE), or gzip it: adam reads gzip"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (unxz FILE), or gzip it: adam reads gzip"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "extract it first (7z x FILE)"),
    (b"Rar!\x1a\x07", "a RAR archive", "extract it first (unrar x FILE)"),
    (b"SQLite format 3\x00", "an SQLite database", "export a table first (sqlite3 -csv -header DB 'select ...')"),
    (b"ARROW1\x00\x00", "an Arrow IPC file", "write it as Parquet (pyarrow.parquet.write_table)"),
    (b"\x93NUMPY", "a NumPy array file", "write the texts as JSON Lines or Parquet"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file", "write the texts as JSON Lines or Parquet"),
)
_TAR_OFFSET = 257  # "ustar" sits here in a tar header


def binary_kind(head: bytes) -> tuple[str, str] | None:
    """(what the file is, what to do) for bytes that are no text adam reads; None for text (gzip and Parquet too)."""
    for magic, what, fix in _MAGIC:
        if head.startswith(magic):
            return what, fix
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):  # + a block
        return "bzip2-compressed", "decompress it first (bunzip2 FILE), or gzip it: adam reads gzip"
    if head[_TAR_OFFSET : _TAR_OFFSET + 5] == b"ustar":
        return "a tar archive", "extract it first (tar -xf FILE)"
    if head.startswith(GZIP) or head.startswith(PARQUET):
        return None
    if b"\x00" in head:
        order = _utf16(head)
        if order:
            fix = f"save it as UTF-8 (iconv -f UTF-16{order} -t UTF-8)"
            return f"UTF-16{order} text without a byte order mark", fix
        return "binary data (it holds NUL bytes)", _TEXT
    return None


def refusal(name: str, head: bytes, *, compressed: bool = False) -> str | None:
    """The one-line refusal of a file whose first bytes are ``head`` (decompressed, with ``compressed``)."""
    found = binary_kind(head)
    if found is None:
        return None
    what, fix = found
    inside = "gzip-compressed, and inside it " if compressed else ""
    return f"{name} is {inside}{what}, which adam cannot read: {fix}"


def _utf16(head: bytes) -> str:
    """ "LE" or "BE" when the NULs fall on every other byte, as in UTF-16 ASCII text; else ""."""
    sample = head[: 4096 - 4096 % 2]
    if len(sample) < 4:
        return ""
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "LE"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "BE"
    return ""


def gunzip_document(data: bytes, limit: int) -> bytes | None:
    """A whole gzip-compressed document, or None when it decompresses to more than ``limit`` bytes."""
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
        out = fh.read(limit + 1)
    return None if len(out) > limit else out
