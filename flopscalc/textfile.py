"""Read the text files users hand to flopscalc (runs CSVs, GPU CSVs, calibration profiles, saved laws).

One reader, so every command answers a bad file the same way: one line naming the file and what is accepted
(UsageError, exit 2), never a UnicodeDecodeError traceback.

- UTF-8 is the encoding read; a leading byte-order mark is dropped (Excel's "CSV UTF-8" writes one,
  ``EF BB BF``; RFC 3629, sec. 6: at the start of a stream U+FEFF is a signature, not content).
- UTF-16 (a BOM ``FF FE`` or ``FE FF``), files with NUL bytes (binary) and any other undecodable byte are
  refused with the encoding expected and how to get it.
- A CSV whose header has semicolons and no comma was saved with ``;`` as the separator (Excel does this where
  the decimal mark is a comma): refused with "save it as comma-separated", since read as CSV it is one column.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from .errors import UsageError

UTF8_BOM = codecs.BOM_UTF8  # EF BB BF
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # FF FE, FE FF
HOW_TO_SAVE_UTF8 = "save it as UTF-8 (in Excel: 'CSV UTF-8'; in an editor: encoding UTF-8)"


def decode_text(data: bytes, where: str, what: str = "file") -> str:
    """Decode a user's file from bytes: UTF-8 with or without a BOM, else one-line UsageError."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    elif data.startswith(UTF16_BOMS):
        raise UsageError(f"{what} {where} is UTF-16 text; expected UTF-8: {HOW_TO_SAVE_UTF8}")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise UsageError(f"{what} {where} is not a text file (a NUL byte at offset {nul}); expected UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{what} {where} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                         f"{HOW_TO_SAVE_UTF8}") from None


def read_text(path: str | Path, what: str = "file", missing_hint: str = "") -> str:
    """Read ``path`` as UTF-8 text (BOM dropped); a missing, unreadable or non-UTF-8 file is a one-line UsageError.

    ``what`` names the file for the message ("runs file", "GPU file", ...); ``missing_hint`` is appended when
    the file does not exist (e.g. "; create one with 'flopscalc calibrate'").
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
    return decode_text(data, str(path), what)


def check_comma_separated(text: str, where: str, what: str = "CSV file") -> None:
    """Refuse a CSV whose header line has ';' or a tab and no ',' (saved with another separator)."""
    header = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    for sep, name in ((";", "semicolon"), ("\t", "tab")):
        if sep in header and "," not in header:
            raise UsageError(f"{what} {where} looks {name}-separated (its header {header.strip()[:60]!r} has "
                             f"{sep!r} and no ','); save it as comma-separated CSV")


def read_csv_text(path: str | Path, what: str = "CSV file", missing_hint: str = "") -> str:
    """`read_text` plus the separator check: the text of a comma-separated file."""
    text = read_text(path, what, missing_hint)
    check_comma_separated(text, str(path), what)
    return text
