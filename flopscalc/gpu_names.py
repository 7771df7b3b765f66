"""GPU names: how a typed name finds its row of the GPU database (`hardware.GpuDatabase.get`), and whether it is a
family name that chose one variant of several (`GpuNames.family_variants`).

Case, full-width characters (NFKC), spaces, hyphens, brand words and word order are ignored; nothing else is: a
prefix, a near miss or a name two rows declare is refused with a suggestion, never guessed.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from .hardware import GpuSpec

# Words dropped before matching names: brands and product-line words users add or leave out.
BRAND_WORDS = {"nvidia", "geforce", "amd", "instinct", "google", "cloud", "radeon", "tesla", "intel", "habana",
               "aws", "amazon"}
# Characters a GPU name may hold after NFKC normalisation and case folding: letters, digits, spaces and the
# separators vendors use ("RTX 4070 Ti", "a100-sxm-80gb", "B200 (HGX B200, 180GB)"). Anything else is refused
# with a suggestion rather than dropped, so "h100\U0001f4a5" is not silently read as an H100.
NAME_SEPARATORS = frozenset(" \t-_.,/()+")
NAME_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def fold_name(text: str) -> str:
    """NFKC-normalise and case-fold a GPU name: full-width 'ＲＴＸ４０９０' -> 'rtx4090'."""
    return unicodedata.normalize("NFKC", text).casefold()


def junk_characters(text: str) -> list[str]:
    """Characters of ``text`` (after `fold_name`) that no GPU name uses, in order of appearance."""
    folded = fold_name(text)
    return list(dict.fromkeys(c for c in folded if c not in NAME_LETTERS and c not in NAME_SEPARATORS
                              and not c.isspace()))


def name_tokens(text: str) -> list[str]:
    """A GPU name's folded words and numbers, brand words dropped (what lookups and the device check compare)."""
    return [t for t in re.findall(r"[a-z0-9]+", fold_name(text)) if t not in BRAND_WORDS]


def normalize_name(text: str) -> str:
    """Folded, brand words dropped, separators removed: 'RTX 4070 Ti' -> 'rtx4070ti'."""
    return "".join(name_tokens(text))


def token_bag(text: str) -> str:
    """Order-free form: words split at letter/digit boundaries, sorted: 'A100 80GB SXM' == 'a100-sxm-80gb'."""
    parts = re.findall(r"[a-z]+|[0-9]+", " ".join(name_tokens(text)))
    return " ".join(sorted(parts))


def _name_forms(spec: GpuSpec) -> set[str]:
    forms = {normalize_name(spec.key), normalize_name(spec.name)}
    forms |= {normalize_name(a) for a in spec.aliases}
    # GeForce/RTX names are typed without the 'rtx': '4070ti', '3090'
    forms |= {f[3:] for f in list(forms) if re.match(r"rtx\d", f)}
    return {f for f in forms if f}


def model_number(text: str) -> str | None:
    """The first word of a GPU name with a digit in it, brand words dropped (None if it has none): 'Tesla
    V100-SXM2-16GB' -> 'v100', 'NVIDIA A10G' -> 'a10g', 'NVIDIA GH200 480GB' -> 'gh200'."""
    return next((t for t in name_tokens(text) if any(c.isdigit() for c in t)), None)


def name_words(text: str) -> set[str]:
    """Whole words of a name, split at letter/digit boundaries: 'H100 SXM5' -> {'h', '100', 'sxm', '5'}."""
    return set(token_bag(text).split())


class GpuNames:
    """The name index of GPU rows (key -> `GpuSpec`): forgiving but never guessing lookups."""

    def __init__(self, specs: dict[str, GpuSpec]):
        self.specs = specs

    @functools.cached_property
    def _forms(self) -> dict[str, list[str]]:
        """Normalised key/name/alias -> the rows that declare it; built on the first lookup (a listing needs none)."""
        forms: dict[str, list[str]] = {}
        for s in self.specs.values():
            for f in _name_forms(s):
                forms.setdefault(f, []).append(s.key)
        return forms

    @functools.cached_property
    def _bags(self) -> dict[str, list[str]]:
        """`_forms` order-free (`token_bag`)."""
        bags: dict[str, list[str]] = {}
        for s in self.specs.values():
            for text in (s.key, s.name, *s.aliases):
                if token_bag(text):
                    keys = bags.setdefault(token_bag(text), [])
                    if s.key not in keys:
                        keys.append(s.key)
        return bags

    def get(self, name: str) -> GpuSpec:
        """Find a GPU by key, name or declared alias.

        Case, full-width characters (NFKC), spaces, hyphens, brand words and word order are ignored; the
        name must otherwise match whole: a prefix ('h20' of 'h200') or a name with characters no GPU name
        uses ('h100' plus an emoji) is refused with a suggestion, and a name two rows declare is refused
        as ambiguous. Raises UsageError (one line).
        """
        junk = junk_characters(name)
        if junk:
            shown = " ".join(repr(c) for c in junk)
            raise UsageError(f"GPU name {name!r} contains {shown}, which no GPU name uses (letters, digits, spaces "
                             f"and - _ . , / ( ) +){self._hint(name)}")
        keys = self._forms.get(normalize_name(name)) or self._bags.get(token_bag(name)) or []
        if len(keys) == 1:
            return self.specs[keys[0]]
        if len(keys) > 1:
            raise UsageError(f"GPU name {name!r} is ambiguous: it names {' and '.join(keys)}; give one of those keys")
        raise UsageError(f"unknown GPU {name!r}{self._hint(name)}")

    def family_variants(self, name: str) -> tuple[str, ...] | None:
        """The other rows of the family when ``name`` is a family name one row lists as an alias, else None.

        A family name ('a100', 'h100', '3060') keeps the model number of the resolved row's key and leaves out words
        its key or name holds (a size, a form factor: 'a100' of 'a100-sxm-80gb'); it still names that one row, never
        another product. The tuple holds the keys of the other rows whose key, name or an alias holds every word of
        ``name`` (empty: no other variant is in the database). None when ``name`` is the row's key or names it whole
        ('4090' for 'rtx-4090', 'h20'), or is another spelling of it: a word the row's key and name lack
        ('a100-pcie-80g', 'tpuv4', 'trn2'), or a codename without the model number ('grace-hopper' of 'gh200').
        """
        spec = self.get(name)
        words = name_words(name)
        key_words = name_words(spec.key)
        if not (key_words - words - {"rtx"}):  # GeForce names are typed without the 'rtx' ('4070ti')
            return None
        if not words < key_words | name_words(spec.name) or not any(w.isdigit() for w in words & key_words):
            return None  # a spelling of the one product, not a family of several
        return tuple(k for k, s in self.specs.items() if k != spec.key
                     and any(words <= name_words(t) for t in (s.key, s.name, *s.aliases)))

    def _hint(self, name: str) -> str:
        """'; did you mean X or Y?' from whole-word, prefix and spelling neighbours of ``name``."""
        cleaned = "".join(c if c in NAME_LETTERS or c in NAME_SEPARATORS else " " for c in fold_name(name))
        q = normalize_name(cleaned)
        if not q:
            return "; run 'flopscalc gpus' to list them"
        exact = self._forms.get(q) or self._bags.get(token_bag(cleaned)) or []
        if exact:  # the name without its junk characters is a GPU's
            return f"; did you mean {' or '.join(exact)}?"
        words = name_words(cleaned)
        subset = [k for k, s in self.specs.items()
                  if any(words <= name_words(t) for t in (s.key, s.name, *s.aliases))]
        prefixed = sorted({k for f, ks in self._forms.items() if f.startswith(q) for k in ks})
        close = difflib.get_close_matches(q, list(self._forms), n=3, cutoff=0.6)
        keys = list(dict.fromkeys([*subset, *prefixed, *(k for c in close for k in self._forms[c])]))[:5]
        return f"; did you mean {' or '.join(keys)}?" if keys else "; run 'flopscalc gpus' to list them"
