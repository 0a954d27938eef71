"""Reading files to text: suffixes, HTML stripping, PDFs, encodings, binary data, folder walks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ollagraph.agents.errors import IngestError
from ollagraph.tools.loaders import (
    FileSkipped,
    decode_text,
    html_to_text,
    iter_files,
    load_file,
    markdown_title,
    parse_bytes,
)
from tests.pdf import minimal_pdf

# -- text, markdown, html --------------------------------------------------------------------


def test_markdown_title_is_the_first_heading_outside_code(tmp_path: Path) -> None:
    text = "intro\n```\n# not a title\n```\n## Returns policy ##\n\n# Later\n"
    assert markdown_title(text) == "Returns policy"
    file = tmp_path / "guide.md"
    file.write_text(text, encoding="utf-8")
    loaded = load_file(file)
    assert loaded.title == "Returns policy"
    assert loaded.text == text
    assert loaded.warnings == ()


def test_text_file_title_is_the_file_name(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("# not markdown\nplain text", encoding="utf-8")
    assert load_file(file).title == "notes.txt"


def test_html_keeps_visible_text_and_drops_scripts_and_styles() -> None:
    html = (
        "<!doctype html><html><head><title>Duck &amp; Co</title><style>p{color:red}</style>"
        "<script>var secret = 1;</script></head><body><nav>Home</nav>"
        "<h1>Care guide</h1><p>Rinse   ducks <b>weekly</b>.</p><script>alert(1)</script>"
        "<ul><li>one</li><li>two</li></ul><noscript>enable js</noscript></body></html>"
    )
    text, title = html_to_text(html)
    assert title == "Duck & Co"
    assert "Rinse ducks weekly." in text
    assert "one" in text.splitlines() and "two" in text.splitlines()
    for hidden in ("secret", "alert", "color:red", "enable js"):
        assert hidden not in text


def test_html_title_falls_back_to_first_h1(tmp_path: Path) -> None:
    file = tmp_path / "page.htm"
    file.write_text("<h1>Shipping <i>times</i></h1><p>Two days.</p>", encoding="utf-8")
    loaded = load_file(file)
    assert loaded.title == "Shipping times"
    assert loaded.text == "Shipping times\n\nTwo days."


# -- encodings and binary data ---------------------------------------------------------------


def test_utf8_with_bom_and_utf16_decode_cleanly(tmp_path: Path) -> None:
    assert decode_text(tmp_path / "a.txt", "\ufeffcafé".encode()) == ("café", ())
    assert decode_text(tmp_path / "b.txt", "crème brûlée".encode("utf-16")) == ("crème brûlée", ())


def test_latin1_text_is_read_with_replacement_and_a_warning(tmp_path: Path) -> None:
    file = tmp_path / "menu.txt"
    file.write_bytes("Café au lait is served every morning at eight.".encode("latin-1"))
    loaded = load_file(file)
    assert "Caf\ufffd au lait is served" in loaded.text
    assert len(loaded.warnings) == 1 and "not valid UTF-8" in loaded.warnings[0]


def test_binary_file_with_a_text_suffix_is_refused_by_name(tmp_path: Path) -> None:
    file = tmp_path / "photo.txt"
    file.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(IngestError, match=r"photo\.txt looks like binary data"):
        load_file(file)


def test_binary_without_nul_bytes_is_refused(tmp_path: Path) -> None:
    data = bytes(b for b in range(1, 256) if b not in b"\t\n\r ") * 20
    with pytest.raises(IngestError, match="binary"):
        decode_text(tmp_path / "x.md", data)


def test_empty_and_whitespace_files_are_skipped(tmp_path: Path) -> None:
    for name, data in (("empty.md", b""), ("blank.txt", b"  \n\t\n")):
        file = tmp_path / name
        file.write_bytes(data)
        with pytest.raises(FileSkipped) as info:
            load_file(file)
        assert info.value.reason == "empty file"


def test_html_with_only_markup_is_skipped(tmp_path: Path) -> None:
    with pytest.raises(FileSkipped, match="no text"):
        parse_bytes(tmp_path / "x.html", b"<html><script>x()</script></html>")


def test_unsupported_suffix_is_skipped_with_the_supported_list(tmp_path: Path) -> None:
    file = tmp_path / "logo.png"
    file.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(FileSkipped) as info:
        load_file(file)
    assert "unsupported file type .png" in info.value.reason
    assert ".md" in info.value.reason and ".pdf" in info.value.reason


# -- pdf -------------------------------------------------------------------------------------


def test_pdf_text_and_title_are_extracted(tmp_path: Path) -> None:
    file = tmp_path / "warranty.pdf"
    file.write_bytes(minimal_pdf(["Warranty terms", "Ducks are covered for two years."], "Terms"))
    loaded = load_file(file)
    assert "Ducks are covered for two years." in loaded.text
    assert loaded.title == "Terms"


def test_broken_pdf_is_refused_by_name(tmp_path: Path) -> None:
    file = tmp_path / "broken.pdf"
    file.write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    with pytest.raises(IngestError, match=r"broken\.pdf is not a readable PDF"):
        load_file(file)


def test_pdf_without_text_is_skipped(tmp_path: Path) -> None:
    with pytest.raises(FileSkipped, match="no extractable text"):
        parse_bytes(tmp_path / "scan.pdf", minimal_pdf([]))


# -- walking folders -------------------------------------------------------------------------


def test_iter_files_walks_sorted_and_skips_hidden(tmp_path: Path) -> None:
    for name in ("b.md", "a.txt", "sub/c.html", "sub/.secret.md", ".git/config", "z/y/x.pdf"):
        file = tmp_path / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("x", encoding="utf-8")
    found = [p.relative_to(tmp_path.resolve()).as_posix() for p in iter_files([tmp_path])]
    assert found == ["a.txt", "b.md", "sub/c.html", "z/y/x.pdf"]


def test_iter_files_yields_named_files_once_even_hidden(tmp_path: Path) -> None:
    hidden = tmp_path / ".notes.md"
    hidden.write_text("x", encoding="utf-8")
    assert list(iter_files([hidden, tmp_path / ".notes.md", tmp_path])) == [hidden.resolve()]


def test_iter_files_names_a_missing_path_before_yielding(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("x", encoding="utf-8")
    with pytest.raises(IngestError, match=r"nowhere\.md does not exist"):
        next(iter_files([tmp_path, tmp_path / "nowhere.md"]))


def test_loaders_import_nothing_heavy() -> None:
    import subprocess

    code = (
        "import sys, ollagraph.tools.loaders; "
        "print([m for m in ('pypdf', 'llama_index', 'duckdb', 'torch') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
