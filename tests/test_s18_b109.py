"""Today's final read, helper b109: small mends the readers reproduced at 6421209.

Each test failed before its fix. Every CLI case drives the real app in-process and checks the contract: the exit code
and ONE line starting "flopscalc: error:" (conftest `refused`), or the computed field the fix moves.
"""

from __future__ import annotations

import pytest
from conftest import cli, refused

# ------------------------------------------------------------------ 1. step --search: the refusal is formatted

SEARCH = ["step", "--gpu", "h100", "--model", "gpt2-xl", "--n-gpus", "8", "--search"]


@pytest.mark.parametrize("extra, pronoun", [
    (["--zero", "1"], "drop it or drop --search"),
    (["--zero", "1", "--recompute", "full"], "drop them or drop --search"),
])
def test_search_refusal_names_what_to_drop_in_words(capsys, extra, pronoun):
    line = refused(capsys, *SEARCH, *extra)
    assert "{" not in line and "len(" not in line  # was: "drop {'them' if len(chosen) > 1 else 'it'} or ..."
    assert pronoun in line
