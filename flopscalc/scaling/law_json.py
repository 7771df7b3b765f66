"""A scaling law as the JSON object of a saved law file, and back, every field checked by name.

`law_to_dict` writes what `law_from_dict` reads (schema `LAW_SCHEMA_VERSION`). A saved law is a file the user can
edit, so a field of the wrong type or a missing one is one line naming the field ("field loss_form.A must be a
number, got "400" (text)"), never Python's words about a constructor; an unknown key in the loss form or the
allocation is refused rather than dropped (a misspelt "k_D" would silently change the allocation).
"""

from __future__ import annotations

import json
import math

from ..errors import DomainError, UsageError
from .laws import FittedRange, KaplanLoss, ParametricLoss, PowerLawAllocation, RepetitionDecay, ScalingLaw

LAW_SCHEMA_VERSION = 1
# The constants of each loss form as the file names them (law_to_dict: ParametricLoss.constants, KaplanLoss fields).
LOSS_FORM_FIELDS = {"parametric": ("E", "A", "B", "alpha", "beta"), "kaplan": ("alpha_n", "alpha_d", "n_c", "d_c")}
ALLOCATION_FIELDS = ("k_n", "a", "k_d", "b", "c_unit_flops")  # PowerLawAllocation's; k_d, b, c_unit_flops optional


def law_to_dict(law: ScalingLaw) -> dict:
    form = law.loss_form
    d = {
        "schema_version": LAW_SCHEMA_VERSION, "name": law.name, "title": law.title, "source": law.source,
        "flop_convention": law.flop_convention, "n_counts_embeddings": law.n_counts_embeddings,
        "loss_form": None, "allocation": None,
        "uncertainty": {k: list(v) for k, v in law.uncertainty.items()}, "uncertainty_kind": law.uncertainty_kind,
        "notes": law.notes,
        # optional since they were added: files written before load without them (no range, GPT-2 vocabulary)
        "fitted_range": law.fitted_range.as_dict() if law.fitted_range is not None else None,
        "vocab_size": law.vocab_size,
        "repetition": _repetition_dict(law.repetition),
    }
    if isinstance(form, ParametricLoss):
        d["loss_form"] = {"kind": "parametric", **form.constants()}
    elif isinstance(form, KaplanLoss):
        d["loss_form"] = {"kind": "kaplan", "alpha_n": form.alpha_n, "alpha_d": form.alpha_d,
                          "n_c": form.n_c, "d_c": form.d_c}
    if law.allocation is not None:
        al = law.allocation
        d["allocation"] = {"k_n": al.k_n, "a": al.a, "k_d": al.k_d, "b": al.b, "c_unit_flops": al.c_unit_flops}
    return d


def _repetition_dict(rep: RepetitionDecay | None) -> dict | None:
    if rep is None:
        return None
    return {"r_d_star": rep.r_d_star, "r_n_star": rep.r_n_star,
            "unique_tokens": list(rep.unique_tokens) if rep.unique_tokens else None, "source": rep.source}


def _kind(v) -> str:
    """What a JSON value is, in the words of the file's author."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    return {str: "text", list: "a list", dict: "an object"}.get(type(v), "a number")


class _Fields:
    """Typed reads of one JSON object of a law file; every failure a UsageError naming the file and the field."""

    def __init__(self, d: dict, where: str, prefix: str = "") -> None:
        self.d, self.where, self.prefix = d, where, prefix

    def _bad(self, key: str, wanted: str, v) -> UsageError:
        shown = json.dumps(v)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return UsageError(f"{self.where}: field {self.prefix}{key} must be {wanted}, got {shown} ({_kind(v)}); fix it, "
                          "or fit and save the law again")

    def get(self, key: str, wanted: str, ok, *, optional: bool = False, default=None):
        if key not in self.d:
            if optional:
                return default
            raise UsageError(f"{self.where}: field {self.prefix}{key} is missing: not a flopscalc law file, or one "
                             "edited by hand; fit and save the law again")
        v = self.d[key]
        if not ok(v):
            raise self._bad(key, wanted, v)
        return v

    def number(self, key: str, *, optional: bool = False, default=None, null: bool = False):
        def ok(v):
            return (null and v is None) or (isinstance(v, (int, float)) and not isinstance(v, bool))
        v = self.get(key, "a number" + (" or null" if null else ""), ok, optional=optional, default=default)
        return None if v is None else float(v)

    def text(self, key: str, *, optional: bool = False) -> str:
        return self.get(key, "text", lambda v: isinstance(v, str), optional=optional, default="")

    def span(self, key: str) -> tuple[float, float] | None:
        def ok(v):
            return v is None or (isinstance(v, list) and len(v) == 2
                                 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                                 and all(math.isfinite(x) for x in v) and v[0] <= v[1])
        v = self.get(key, "[low, high] (two finite numbers, low <= high) or null", ok, optional=True)
        return None if v is None else (float(v[0]), float(v[1]))

    def section(self, key: str, *, optional: bool = True) -> _Fields | None:
        v = self.get(key, "an object or null", lambda x: x is None or isinstance(x, dict), optional=optional)
        return None if v is None else _Fields(v, self.where, f"{self.prefix}{key}.")

    def only(self, allowed: tuple[str, ...]) -> None:
        """Refuse a key outside ``allowed`` (besides 'kind'): a misspelt constant would be dropped unseen."""
        extra = [k for k in self.d if k not in (*allowed, "kind")]
        if extra:
            raise UsageError(f"{self.where}: field {self.prefix}{extra[0]} is not one of {', '.join(allowed)}; fix "
                             "its name, or fit and save the law again")


def _loss_form(f: _Fields | None):
    if f is None:
        return None
    kind = f.get("kind", "'parametric' or 'kaplan'", lambda v: v in LOSS_FORM_FIELDS)
    names = LOSS_FORM_FIELDS[kind]
    f.only(names)
    values = [f.number(k) for k in names]
    return ParametricLoss(*values) if kind == "parametric" else KaplanLoss(*values)


def _allocation(f: _Fields | None) -> PowerLawAllocation | None:
    if f is None:
        return None
    f.only(ALLOCATION_FIELDS)
    return PowerLawAllocation(k_n=f.number("k_n"), a=f.number("a"), k_d=f.number("k_d", optional=True, null=True),
                              b=f.number("b", optional=True, null=True),
                              c_unit_flops=f.number("c_unit_flops", optional=True, default=1.0))


def law_from_dict(d: dict, where: str) -> ScalingLaw:
    """The law of a saved file's JSON object ``d``; ``where`` names the file in the one-line UsageError."""
    if d.get("schema_version") != LAW_SCHEMA_VERSION:
        raise UsageError(f"{where}: schema_version {d.get('schema_version')!r} is not {LAW_SCHEMA_VERSION}; "
                         "refit and save the law again")
    f = _Fields(d, where)
    uncertainty = f.get("uncertainty", "an object of [low, high] intervals", lambda v: isinstance(v, dict),
                        optional=True, default={})
    unc = _Fields(uncertainty, where, "uncertainty.")
    fr, rep = f.section("fitted_range"), f.section("repetition")
    vocab = f.get("vocab_size", "a whole number or null",
                  lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0), optional=True)
    try:
        return ScalingLaw(
            name=f.text("name"), title=f.text("title"), source=f.text("source"),
            flop_convention=f.text("flop_convention"),
            n_counts_embeddings=f.get("n_counts_embeddings", "true, false or null",
                                      lambda v: v is None or isinstance(v, bool)),
            # required, object or null: every law file has written both (law_to_dict); a missing loss_form read as
            # null would turn a fitted law into an allocation-only rule unseen, a missing allocation drop Kaplan's
            loss_form=_loss_form(f.section("loss_form", optional=False)),
            allocation=_allocation(f.section("allocation", optional=False)),
            uncertainty={k: s for k in uncertainty if (s := unc.span(k)) is not None},
            uncertainty_kind=f.text("uncertainty_kind", optional=True), notes=f.text("notes", optional=True),
            fitted_range=FittedRange(n_params=fr.span("n_params"), n_tokens=fr.span("n_tokens"),
                                     c_flops=fr.span("c_flops"), source=fr.text("source", optional=True))
            if fr is not None else None,
            vocab_size=vocab,
            repetition=RepetitionDecay(rep.number("r_d_star"), rep.number("r_n_star"), rep.span("unique_tokens"),
                                       rep.text("source", optional=True)) if rep is not None else None)
    except DomainError as e:  # a value of the right type out of range (a negative constant, low > high)
        raise UsageError(f"{where}: {e}; fix it, or fit and save the law again") from None
