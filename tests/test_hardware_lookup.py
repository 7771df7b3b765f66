"""GPU-name lookup: forgiving about spelling, never turning one product's name into another's (issue 14).

The checks compare against the CSV read with the standard csv module and a word split written here, not
against the lookup's own normalisation: a name resolves to the row that declares it, or is refused.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.errors import UsageError
from flopscalc.hardware import get_gpu, load_database

CSV_PATH = Path(__file__).resolve().parent.parent / "data" / "gpu_specs.csv"
with CSV_PATH.open(newline="", encoding="utf-8") as _f:
    ROWS = list(csv.DictReader(_f))
# every (row key, declared name): the key, the full name and each alias
NAMES = [(r["key"], n) for r in ROWS
         for n in dict.fromkeys([r["key"], r["name"], *(a.strip() for a in r["aliases"].split(";") if a.strip())])]
# brand and product-line words a user adds or leaves out ("NVIDIA GeForce RTX 4090" = "4090")
BRANDS = {"nvidia", "geforce", "amd", "instinct", "google", "cloud", "radeon", "tesla", "intel", "habana", "aws",
          "amazon", "rtx"}


def words(text: str) -> list[str]:
    """Sorted words split at letter/digit boundaries, brand words dropped: 'H100 SXM' -> ['100', 'h', 'sxm']."""
    return sorted(w for w in re.findall(r"[a-z]+|[0-9]+", text.lower()) if w not in BRANDS)


def squashed(text: str) -> str:
    """Words in order, brand words dropped, joined: 'RTX 4070 Ti S' -> '4070tis' (the alias '4070tis')."""
    return "".join(w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in BRANDS)


def declares(key: str, text: str) -> bool:
    """Whether row ``key`` declares ``text``: a name with the same words, or the same characters run together."""
    return any(words(n) == words(text) or squashed(n) == squashed(text) for k, n in NAMES if k == key)


def full_width(text: str) -> str:
    """ASCII -> the full-width forms an East Asian keyboard types (NFKC maps them back)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text)


# ------------------------------------------------------------------ every row's names find it, in any spelling

@pytest.mark.parametrize("key,name", NAMES)
def test_every_declared_name_resolves_to_its_row(key, name):
    assert get_gpu(name).key == key


@settings(max_examples=300, deadline=None)
@given(pair=st.sampled_from(NAMES), data=st.data())
def test_spelling_variants_of_a_name_resolve_to_its_row(pair, data):
    key, name = pair
    sep = data.draw(st.sampled_from([" ", "-", "_", "  "]), label="separator")
    text = re.sub(r"[ \-_]+", sep, name)
    text = "".join(c.upper() if data.draw(st.booleans()) else c.lower() for c in text)
    if data.draw(st.booleans(), label="brand prefix"):
        text = data.draw(st.sampled_from(["NVIDIA ", "nvidia-", "AMD ", "Google "])) + text
    if data.draw(st.booleans(), label="full width"):
        text = full_width(text)
    text = data.draw(st.sampled_from(["", " ", "\t"])) + text + data.draw(st.sampled_from(["", " "]))
    assert get_gpu(text).key == key


@settings(max_examples=400, deadline=None)
@given(pair=st.sampled_from(NAMES), data=st.data())
def test_a_shortened_or_lengthened_name_never_resolves_to_another_product(pair, data):
    """'h20' is a prefix of 'h200': a truncation (or a name with a character added) resolves only to a row
    that declares exactly those words, and otherwise is refused."""
    _key, name = pair
    if data.draw(st.booleans(), label="truncate"):
        text = name[:data.draw(st.integers(1, max(1, len(name) - 1)))]
    else:
        i = data.draw(st.integers(0, len(name)))
        text = name[:i] + data.draw(st.sampled_from("0123456789xsei")) + name[i:]
    try:
        got = get_gpu(text).key
    except UsageError as e:
        assert "\n" not in str(e)
        return
    assert declares(got, text), (text, got)


# ------------------------------------------------------------------ the cases

def test_h20_is_not_the_h200(tmp_path):
    # issue 14: 'h20' resolved to the H200 by prefix. Without an H20 row it is refused with a suggestion...
    p = tmp_path / "only_h200.csv"
    p.write_text("key,name,aliases,memory_gib,bf16_tflop_per_s\nh200-sxm,NVIDIA H200 SXM 141GB,h200,141,989.5\n",
                 encoding="utf-8")
    from flopscalc.hardware import GpuDatabase, read_gpu_csv

    only_h200 = GpuDatabase(read_gpu_csv(p))
    with pytest.raises(UsageError, match="did you mean h200-sxm"):
        only_h200.get("h20")
    # ...and with the shipped table it is the H20's own row
    assert get_gpu("h20").key == "h20" and get_gpu("h200").key == "h200-sxm"


@pytest.mark.parametrize("query,key", [("4070ti", "rtx-4070-ti"), ("4070 ti", "rtx-4070-ti"),
                                       ("rtx-4070-ti", "rtx-4070-ti"), ("h100", "h100-sxm"),
                                       ("a100", "a100-sxm-80gb"), ("v100", "v100-sxm2-32gb"), ("4090", "rtx-4090")])
def test_documented_short_names_keep_their_rows(query, key):
    # README: --gpu 4070ti, --gpu h100; 'h100' and 'a100' default to the SXM rows that declare them
    assert get_gpu(query).key == key


@pytest.mark.parametrize("query,key", [("ｈ１００", "h100-sxm"), ("ＲＴＸ\u3000４０７０\u3000Ｔｉ", "rtx-4070-ti"),
                                       ("Ａ100－ＳＸＭ－80ＧＢ", "a100-sxm-80gb")])
def test_full_width_names_are_nfkc_normalised(query, key):
    assert get_gpu(query).key == key


@pytest.mark.parametrize("query,suggested", [("h100💥", "h100-sxm"), ("4070ti!", "rtx-4070-ti"),
                                             ("a100™", "a100-sxm-80gb"), ("h100\u200b", "h100-sxm"),
                                             ("h100é", "h100-sxm")])
def test_junk_characters_are_refused_with_a_suggestion(query, suggested):
    with pytest.raises(UsageError) as err:
        get_gpu(query)
    msg = str(err.value)
    assert "\n" not in msg and "did you mean" in msg and suggested in msg


@settings(max_examples=200, deadline=None)
@given(pair=st.sampled_from(NAMES), junk=st.characters(blacklist_categories=("Lu", "Ll", "Lt", "Nd", "Zs", "Cs"),
                                                       blacklist_characters="-_.,/()+\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
                                                                            "\x85\u2028\u2029"),
       data=st.data())
def test_any_junk_character_in_a_name_is_refused(pair, junk, data):
    import unicodedata

    folded = unicodedata.normalize("NFKC", junk).casefold()
    if re.fullmatch(r"[a-z0-9\s\-_.,/()+]*", folded):
        return  # NFKC turns it into ordinary characters (e.g. a superscript digit): not junk
    _key, name = pair
    i = data.draw(st.integers(0, len(name)))
    with pytest.raises(UsageError) as err:
        get_gpu(name[:i] + junk + name[i:])
    assert "\n" not in str(err.value)


def test_a_name_two_rows_declare_is_ambiguous(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("key,name,aliases,memory_gib,bf16_tflop_per_s\n"
                 "lab-a,Lab Card A,labcard,8,10\nlab-b,Lab Card B,labcard,8,20\n", encoding="utf-8")
    db = load_database([p])
    with pytest.raises(UsageError) as err:
        db.get("labcard")
    msg = str(err.value)
    assert "ambiguous" in msg and "lab-a" in msg and "lab-b" in msg and "\n" not in msg
    assert db.get("lab card a").key == "lab-a"


@pytest.mark.parametrize("query,candidates", [("4070t", {"rtx-4070-ti", "rtx-4070-ti-super"}),
                                              ("h1", {"h100-sxm", "h100-pcie"}), ("rtx 6000", {"rtx-6000-ada"})])
def test_unknown_names_suggest_neighbours(query, candidates):
    with pytest.raises(UsageError) as err:
        get_gpu(query)
    msg = str(err.value)
    assert "did you mean" in msg and all(c in msg for c in candidates)
