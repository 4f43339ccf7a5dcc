"""What an input really is, told from its first bytes and its kind of file: the messages name
it ("a tar archive", "a FIFO", "an MP4 cut off before its index") instead of guessing."""
from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

def looks_like_text(path: Path) -> bool:
    """True for files whose first 4 KB are NUL-free UTF-8 (text, JSON, CSV, scripts)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3   # only a multi-byte character cut at the end
    return True


# What a file really holds, from its first bytes, for messages that say so: (magic, offset, what).
_SIGNATURES = (
    (b"ftyp", 4, "an MP4/QuickTime video"), (b"\x1aE\xdf\xa3", 0, "a Matroska/WebM video"),
    (b"RIFF", 0, "a RIFF file (AVI video or WAV/WebP)"), (b"\x00\x00\x01\xba", 0, "an MPEG video"),
    (b"GIF8", 0, "a GIF animation"), (b"\xff\xd8\xff", 0, "a JPEG image"), (b"\x89PNG", 0, "a PNG image"),
    (b"PK\x03\x04", 0, "a zip archive"), (b"ustar", 257, "a tar archive"), (b"%PDF", 0, "a PDF document"),
    (b"\x1f\x8b", 0, "a gzip archive"), (b"7z\xbc\xaf", 0, "a 7-Zip archive"), (b"\x7fELF", 0, "a program"),
)


def sniff(path: Path) -> str | None:
    """What the file's first bytes say it is ("an MP4/QuickTime video", "a tar archive"), or
    None when they say nothing known."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    for magic, offset, what in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return what
    return None


def not_a_regular_file(path: Path, spec: str) -> str | None:
    """One sentence when the path is a pipe, a device or a socket (reading one could block
    forever: a FIFO without a writer never opens), else None."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        what = "a named pipe (FIFO)"
    elif stat.S_ISCHR(mode):
        what = "a character device"
    elif stat.S_ISBLK(mode):
        what = "a block device"
    elif stat.S_ISSOCK(mode):
        what = "a socket"
    else:
        what = "not a regular file"
    return (f"input '{spec}' is {what}, not a video or image file: save what it delivers to a "
            "file first, or give a camera index or stream URL.")


def redact_url(url: str) -> str:
    """Hide a password in rtsp://user:pass@host URLs: the description is printed and exported."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # Host and port as written: .hostname would lowercase it and drop an IPv6 address's [].
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def mp4_cut_before_index(path: Path) -> bool:
    """True for an MP4/QuickTime file without its index ('moov' box) whose last box runs past
    the end of the file: a recording cut off before the index, which cameras write last."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            offset, boxes = 0, []
            while offset + 8 <= size and len(boxes) < 10_000:
                f.seek(offset)
                header = f.read(16)
                length, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if length == 1 and len(header) == 16:     # 64-bit size follows
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:                         # the box runs to the end of the file
                    length = size - offset
                if length < 8:
                    return False                          # not a box structure at all
                boxes.append(kind)
                offset += length
    except OSError:
        return False
    return bool(boxes) and boxes[0] == b"ftyp" and b"moov" not in boxes and offset > size
