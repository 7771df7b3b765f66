"""Read the text files users hand to flopscalc (runs CSVs, GPU CSVs, calibration profiles, saved laws).

One reader, so every command answers a bad file the same way: one line naming the file and what is accepted
(UsageError, exit 2), never a UnicodeDecodeError traceback.

- UTF-8 is the encoding read; a leading byte-order mark is dropped (Excel's "CSV UTF-8" writes one,
  ``EF BB BF``; RFC 3629, sec. 6: at the start of a stream U+FEFF is a signature, not content).
- UTF-32 (a BOM ``FF FE 00 00`` or ``00 00 FE FF``, tested first: UTF-16-LE's BOM begins UTF-32-LE's), UTF-16
  (a BOM ``FF FE`` or ``FE FF``), files with NUL bytes (binary) and any other undecodable byte are
  refused with the encoding expected and how to get it: for a CSV (``csv=True``, as `read_csv_text` reads) how to
  save it from Excel, which is where a CSV in another encoding usually comes from; for any other file (a JSON
  config, plan or profile, a text corpus) Excel's hint would mislead, so the line names an editor and the
  ``iconv`` command that converts that very file.
- A CSV whose header has semicolons and no comma was saved with ``;`` as the separator (Excel does this where
  the decimal mark is a comma): refused with "save it as comma-separated", since read as CSV it is one column.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from .errors import UsageError

UTF8_BOM = codecs.BOM_UTF8  # EF BB BF
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # FF FE, FE FF
# FF FE 00 00, 00 00 FE FF: tested before UTF-16's, whose little-endian BOM is the first two bytes of UTF-32-LE's
UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
HOW_TO_SAVE_UTF8 = "save it as UTF-8 (in Excel: 'CSV UTF-8'; in an editor: encoding UTF-8)"


def how_to_convert(where: str, source_encoding: str, known: bool = True) -> str:
    """How to get a non-CSV file in UTF-8: an editor, or the ``iconv`` command (POSIX) for this file.

    ``known``: the file is in ``source_encoding`` (a UTF-16 BOM says so); else that encoding is an example.
    """
    import shlex
    from pathlib import PurePath

    path = PurePath(where)
    target = path.with_name(f"{path.stem}.utf8{path.suffix}")
    how = "convert it:" if known else "convert it from the encoding it is in, e.g."
    return (f"save it as UTF-8 (in an editor: encoding UTF-8), or {how} iconv -f {source_encoding} -t UTF-8 "
            f"{shlex.quote(where)} > {shlex.quote(str(target))}")


# The encoding named in the iconv hint for a byte that is not UTF-8: we cannot know the file's encoding, so the hint
# names a common single-byte one (Windows' ANSI code page for Western European languages, whose printable range
# includes Latin-1's) as an example and says -f is the encoding the file is in.
ICONV_GUESS = "WINDOWS-1252"


def decode_text(data: bytes, where: str, what: str = "file", *, csv: bool = False) -> str:
    """Decode a user's file from bytes: UTF-8 with or without a BOM, else one-line UsageError.

    ``csv``: the file is a CSV, so the hint says how to save one from Excel; otherwise it names an editor and
    ``iconv``.
    """
    data = data.removeprefix(UTF8_BOM)
    for boms, encoding in ((UTF32_BOMS, "UTF-32"), (UTF16_BOMS, "UTF-16")):
        if data.startswith(boms):  # iconv's -f UTF-32 / UTF-16 read the BOM for the byte order (glibc, libiconv)
            hint = HOW_TO_SAVE_UTF8 if csv else how_to_convert(where, encoding)
            raise UsageError(f"{what} {where} is {encoding} text; expected UTF-8: {hint}")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise UsageError(f"{what} {where} is not a text file (a NUL byte at offset {nul}); expected UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        hint = HOW_TO_SAVE_UTF8 if csv else how_to_convert(where, ICONV_GUESS, known=False)
        raise UsageError(f"{what} {where} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                         f"{hint}") from None


def read_text(path: str | Path, what: str = "file", missing_hint: str = "", *, csv: bool = False) -> str:
    """Read ``path`` as UTF-8 text (BOM dropped); a missing, unreadable or non-UTF-8 file is a one-line UsageError.

    ``what`` names the file for the message ("runs file", "GPU file", ...); ``missing_hint`` is appended when
    the file does not exist (e.g. "; create one with 'flopscalc calibrate'"); ``csv``: see `decode_text`.
    """
    if str(path) in ("", "."):  # typer turns an empty Path option ('--config ""') into '.'
        raise UsageError(f"{what}: the path is empty (or '.', the current folder); give the file itself")
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist{missing_hint}") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a directory; give the file itself") from None
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror or e}") from None
    return decode_text(data, str(path), what, csv=csv)


def check_comma_separated(text: str, where: str, what: str = "CSV file") -> None:
    """Refuse a CSV whose header line has ';' or a tab and no ',' (saved with another separator)."""
    header = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    for sep, name in ((";", "semicolon"), ("\t", "tab")):
        if sep in header and "," not in header:
            raise UsageError(f"{what} {where} looks {name}-separated (its header {header.strip()[:60]!r} has "
                             f"{sep!r} and no ','); save it as comma-separated CSV")


def read_csv_text(path: str | Path, what: str = "CSV file", missing_hint: str = "") -> str:
    """`read_text` plus the separator check: the text of a comma-separated file."""
    text = read_text(path, what, missing_hint, csv=True)
    check_comma_separated(text, str(path), what)
    return text


def parse_json(text: str, where: str, what: str = "file"):
    """``json.loads(text)`` for a user's file, with the failures `json.JSONDecodeError` does not cover made one-line
    UsageErrors naming the file: a key repeated in one object (RFC 8259, sec. 4: names SHOULD be unique, and readers
    disagree on which value wins; Python's keeps the last without a word), nesting past the interpreter's recursion
    limit (RecursionError), and an integer longer than Python converts (sys.get_int_max_str_digits, 4,300 digits).
    A text that is not JSON at all still raises `json.JSONDecodeError`, which each reader words for its own file.
    """
    import json

    def unique_keys(pairs: list) -> dict:
        seen: dict = {}
        for key, value in pairs:
            if key in seen:
                raise UsageError(f"{what} {where}: key {key!r} appears twice in one object; keep one of them (JSON "
                                 "readers disagree on which one counts)")
            seen[key] = value
        return seen

    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except RecursionError:
        raise UsageError(f"{what} {where} is nested too deeply to read (brackets inside brackets past Python's "
                         "recursion limit); expected a flopscalc or Hugging Face JSON file") from None
    except json.JSONDecodeError:
        raise
    except ValueError as e:  # UsageError from unique_keys is a ValueError: re-raised as it is
        if isinstance(e, UsageError):
            raise
        import sys

        raise UsageError(f"{what} {where} holds a whole number of more than {sys.get_int_max_str_digits():,} digits, "
                         "too long to be a real value; expected a flopscalc or Hugging Face JSON file") from None
