"""Read documents to plain text: .txt, .md, .html/.htm and .pdf.

`iter_files` expands the paths given to `agent ingest` into files; `load_file` (or `parse_bytes`,
when the bytes are already read) turns one file into a `LoadedText`. A file is either loaded,
skipped on purpose (`FileSkipped`: an unsupported type, an empty file, a PDF without text), or
refused as unreadable (`IngestError`: binary data, a broken PDF, no permission).

Only the standard library is imported here; pypdf is imported when a PDF is read.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from ollagraph.agents.errors import IngestError

SUFFIXES: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
MAX_FILE_BYTES = 50 * 1024 * 1024
# A text that is not valid UTF-8 is still read (bad bytes replaced) when at most this share of
# its characters are undecodable or control characters; more means binary data.
MAX_BAD_SHARE = 0.10


class FileSkipped(Exception):
    """A file is left out on purpose (unsupported type, empty); `reason` says why.

    Attributes:
        path: The file.
        reason: A short reason for a person ("empty file").
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class LoadedText:
    """The text of one file.

    Attributes:
        path: The file.
        text: Its plain text (tags, scripts and styles removed for HTML).
        title: The first markdown heading, the HTML/PDF title, else the file name.
        warnings: Things a person should know (bad bytes replaced, ...).
    """

    path: Path
    text: str
    title: str
    warnings: tuple[str, ...] = ()


def is_supported(path: Path) -> bool:
    """Return True when `path` has a suffix this module can read.

    Args:
        path: A file path.
    """
    return path.suffix.lower() in SUFFIXES


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Yield the files named by `paths`, expanding folders recursively.

    Folders are walked in sorted order, skipping hidden files and folders (names starting with
    "."); a file named directly is yielded even when hidden. Each file is yielded once, as an
    absolute path. Every path is checked before the first file is yielded.

    Args:
        paths: Files and folders.

    Raises:
        IngestError: A path does not exist, or is neither a file nor a folder.
    """
    roots = [Path(p).expanduser() for p in paths]
    for root in roots:
        if not root.exists():
            raise IngestError(
                f"{root} does not exist.", hint="Check the path given to `agent ingest`."
            )
        if not (root.is_file() or root.is_dir()):
            raise IngestError(f"{root} is neither a file nor a folder.")
    seen: set[Path] = set()
    for root in roots:
        for file in [root] if root.is_file() else _walk(root):
            absolute = file.resolve()
            if absolute not in seen:
                seen.add(absolute)
                yield absolute


def _walk(folder: Path) -> Iterator[Path]:
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        for name in sorted(files):
            if not _is_hidden(name):
                yield Path(current) / name


def read_bytes(path: Path) -> bytes:
    """Read the bytes of a file that this module can parse.

    Args:
        path: The file.

    Raises:
        FileSkipped: The type is unsupported or the file is too large.
        IngestError: The file cannot be read.
    """
    if not is_supported(path):
        raise FileSkipped(path, _unsupported_reason(path))
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise FileSkipped(path, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
        return path.read_bytes()
    except OSError as exc:
        raise IngestError(f"Cannot read {path}: {exc.strerror or exc}.") from None


def load_file(path: Path) -> LoadedText:
    """Read one file and return its text.

    Args:
        path: The file.

    Raises:
        FileSkipped: The type is unsupported, the file is too large or has no text.
        IngestError: The file cannot be read or holds binary data.
    """
    return parse_bytes(path, read_bytes(path))


def _unsupported_reason(path: Path) -> str:
    kinds = ", ".join(sorted(SUFFIXES))
    suffix = path.suffix or "(no suffix)"
    return f"unsupported file type {suffix} (supported: {kinds})"


def parse_bytes(path: Path, data: bytes) -> LoadedText:
    """Turn the bytes of the file at `path` into text, by the file's suffix.

    Args:
        path: The file (its suffix picks the reader; its name is the fallback title).
        data: Its contents.

    Raises:
        FileSkipped: The type is unsupported or the file has no text.
        IngestError: The bytes are binary data or a broken PDF.
    """
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise FileSkipped(path, _unsupported_reason(path))
    if not data.strip():
        raise FileSkipped(path, "empty file")
    title: str | None = None
    warnings: tuple[str, ...] = ()
    if kind == "pdf":
        text, title = pdf_to_text(path, data)
        if not text.strip():
            raise FileSkipped(path, "no extractable text in the PDF (scanned images?)")
    else:
        text, warnings = decode_text(path, data)
        if kind == "html":
            text, title = html_to_text(text)
        elif kind == "markdown":
            title = markdown_title(text)
        if not text.strip():
            raise FileSkipped(path, "no text in the file")
    return LoadedText(path=path, text=text, title=title or path.name, warnings=warnings)


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def decode_text(path: Path, data: bytes) -> tuple[str, tuple[str, ...]]:
    """Decode a text file: UTF-8 (or UTF-16 with a byte-order mark), else UTF-8 with replacement.

    Bad bytes are replaced (and a warning returned) only when the file is still mostly text.

    Args:
        path: The file, named in messages.
        data: Its bytes.

    Returns:
        The text and any warnings.

    Raises:
        IngestError: The bytes look like binary data.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), ()
        except UnicodeDecodeError:
            pass
    binary = IngestError(
        f"{path} looks like binary data, not {path.suffix or 'text'} text; it was not ingested.",
        hint="Give ingest text, markdown, HTML or PDF files.",
    )
    if b"\x00" in data[:8192]:
        raise binary
    warnings: tuple[str, ...] = ()
    try:
        text = data.decode("utf-8-sig")
        bad = 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        warnings = (f"not valid UTF-8: {bad} undecodable byte sequence(s) were replaced",)
    bad += len(_CONTROL.findall(text))
    if bad > MAX_BAD_SHARE * max(len(text), 1):
        raise binary
    return text, warnings


def markdown_title(text: str) -> str | None:
    """Return the first markdown heading (`# Title`, any level) outside code fences.

    Args:
        text: Markdown.
    """
    fenced = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = None if fenced else re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", stripped)
        if match:
            return match.group(1).strip()
    return None


class _TextExtractor(HTMLParser):
    """Collect the visible text of an HTML page, with line breaks at block elements."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe"})
    BLOCK = frozenset(
        {
            "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
            "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
            "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td",
            "th", "tr", "ul",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping: list[str] = []
        self.title: str | None = None
        self.h1: str | None = None
        self._in_title = False
        self._h1_parts: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self.skipping.append(tag)
        if tag in self.BLOCK:
            self.parts.append("\n")
        if tag == "h1" and self.h1 is None:
            self._h1_parts = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP and tag in self.skipping:
            while self.skipping and self.skipping.pop() != tag:
                pass
        if tag in self.BLOCK:
            self.parts.append("\n")
        if tag == "h1" and self._h1_parts is not None:
            self.h1 = " ".join("".join(self._h1_parts).split()) or None
            self._h1_parts = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = ((self.title or "") + data).strip() or None
        if self.skipping:
            return
        self.parts.append(data)
        if self._h1_parts is not None:
            self._h1_parts.append(data)


def html_to_text(html: str) -> tuple[str, str | None]:
    """Strip tags, scripts and styles from HTML, keeping the visible text.

    Args:
        html: An HTML document or fragment.

    Returns:
        The text (one paragraph per line) and the page title (`<title>`, else the first `<h1>`).
    """
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, parser.title or parser.h1


def pdf_to_text(path: Path, data: bytes) -> tuple[str, str | None]:
    """Extract the text of a PDF with pypdf, one page after another.

    Args:
        path: The file, named in messages.
        data: Its bytes.

    Returns:
        The text and the title from the PDF's metadata, if any.

    Raises:
        IngestError: The PDF is broken or encrypted.
    """
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    # pypdf logs a warning for every small flaw it works around; keep them off the terminal.
    pypdf_logger = logging.getLogger("pypdf")
    level = pypdf_logger.level
    pypdf_logger.setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(f"{path} is an encrypted PDF; it was not ingested.")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except IngestError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(f"{path} is not a readable PDF: {exc}") from None
    finally:
        pypdf_logger.setLevel(level)
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    return text, (str(title).strip() or None) if title else None


__all__ = [
    "SUFFIXES",
    "FileSkipped",
    "LoadedText",
    "decode_text",
    "html_to_text",
    "is_supported",
    "iter_files",
    "load_file",
    "markdown_title",
    "parse_bytes",
    "pdf_to_text",
    "read_bytes",
]
