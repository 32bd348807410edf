"""Slot error rate of E2E texts: which values of the meaning representation (MR) a text fails to state.

An E2E MR is a list of ``attribute[value]`` pairs (``name[Blue Spice], eatType[coffee shop],
area[riverside]``). A value counts as stated when a pattern of its own matches the text:

* ``name`` and ``near`` values literally (case, accents and hyphens ignored). They are removed from
  the text before the other values are matched, so "Raja Indian Cuisine" does not state ``food[Indian]``;
* the other values through hand-written patterns of the phrasings that E2E references use
  (:data:`PATTERNS`): "by the river" states ``area[riverside]``, "not kid friendly" states
  ``familyFriendly[no]``. The numeric price and rating values also accept the word scale that
  references use for them ("low prices" for ``priceRange[less than £20]``, "highly rated" for
  ``customer rating[5 out of 5]``) and the other way round, as the cleaned release's own slot
  matcher does: the two scales name the same three levels.

The slot error rate of a set of texts is missing values / all values, summed over the texts (a
ratio of sums, so that an MR with eight values weighs more than one with three). It counts omissions
only: a value stated wrongly or a value added that the MR does not hold is not detected. The
patterns are checked against the human references, which state their MR by construction in the
cleaned release (``tests/test_e2e.py``).

>>> parse_mr("name[Blue Spice], eatType[coffee shop], area[riverside]")
[('name', 'Blue Spice'), ('eatType', 'coffee shop'), ('area', 'riverside')]
>>> missing_values("name[Blue Spice], eatType[pub], familyFriendly[no]", "Blue Spice is a pub for adults only.")
[]
>>> missing_values("name[Blue Spice], area[riverside], food[Indian]", "Blue Spice is by the river.")
[('food', 'Indian')]
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

_PAIR = re.compile(r"\s*([^,\[\]]+?)\s*\[([^\]]*)\]\s*(?:,|$)")
_LITERAL = ("name", "near")
_NEGATION = r"(?:\bnot?\b|n't|\bnon\b|\bnon-|\bun|\bnever\b|\bisn t\b|\baren t\b)"
_FAMILY = r"(?:famil|kid|child)"
_NOT_FAMILY = re.compile(
    rf"{_NEGATION}\W*(?:\w+\W+){{0,4}}?{_FAMILY}|{_FAMILY}\w*\W+(?:\w+\W+){{0,3}}?{_NEGATION}|adults?\W+only|\badult\b"
)
_STARS = {"1": "(?:1|one)", "3": "(?:3|three)", "5": "(?:5|five)"}


def _rating(digit: str, words: str) -> str:
    number = _STARS[digit]
    return (
        rf"\b{number}\s*(?:out\s*)?(?:of|/)\s*(?:5|five)\b|\b{number}\s*stars?\b|\brated\s*{number}\b"
        rf"|\brating of {number}\b|{words}"
    )


_LOW_RATING = r"\blow(?:ly)?\b|\bpoor|\bbad(?:ly)?\b|\bnot\W+(?:very\W+)?(?:well|highly|good)"
_AVERAGE_RATING = r"\baverage|\bmediocre\b|\bmoderat|\bdecent\b|\bok(?:ay)?\b|\bmiddling\b|\bmedium\b|\bfair\b"
_HIGH_RATING = r"\bhigh|\bexcellent\b|\bgreat\b|\btop\b|\bgood\b|\bwell\W+rated|\bpopular\b"
_CHEAP = r"\bcheap|\binexpensive\b|\blow(?:er)?\W*(?:cost|price|priced|prices)\b|\baffordabl|\bbudget\b"
_MODERATE = r"\bmoderat|\baverage\W*(?:price|priced|prices|cost)|\bmid\W*(?:range|price|priced)|\breasonabl|\bmedium"
_EXPENSIVE = (
    r"\bexpensive|\bpricey|\bpricy|\bhigh\W*(?:end|cost|price|priced|prices)|\bcostly\b"
    r"|\bprices?\W+(?:\w+\W+){0,3}?high\b|\bupscale\b"
)
_CHEAP_OR_20 = (
    r"(?:less|lower|under|below|cheaper)\W+(?:than\W+)?(?:£|l)?\s*20\b|\b20\s*(?:£|pounds?)?\W+or\W+(?:less|under)"
    rf"|<\s*£?\s*20\b|{_CHEAP}"
)
_MODERATE_OR_20_25 = rf"\b20\s*(?:£|pounds?)?\s*(?:–|to|and)?\s*£?\s*25\b|{_MODERATE}"
_EXPENSIVE_OR_30 = (
    r"(?:more|higher|over|above|greater|exceeds?|excess of|starting at|from)\W+(?:than\W+)?£?\s*30\b"
    rf"|\b30\s*(?:£|pounds?)?\W*(?:or more|plus|\+|and (?:up|over|above))|>\s*£?\s*30\b|{_EXPENSIVE}"
)


PATTERNS: dict[tuple[str, str], str] = {
    ("area", "city centre"): r"\bcent(?:re|er|ral)\b|\bdowntown\b|\bcity\b",
    ("area", "riverside"): r"\briver",
    ("eatType", "coffee shop"): r"\bcoffee|\bcaf(?:e|es)\b",
    ("eatType", "pub"): r"\bpubs?\b",
    ("eatType", "restaurant"): r"\brestaurants?\b|\beatery\b|\bdiner\b|\bbistro\b",
    ("food", "Chinese"): r"\bchinese\b",
    ("food", "English"): r"\benglish\b|\bbritish\b",
    ("food", "Fast food"): r"\bfast\s*food|\bburgers?\b|\bfries\b",
    ("food", "French"): r"\bfrench\b",
    ("food", "Indian"): r"\bindian\b",
    ("food", "Italian"): r"\bitalian\b|\bpasta\b|\bpizza",
    ("food", "Japanese"): r"\bjapanese\b|\bsushi\b",
    ("priceRange", "cheap"): _CHEAP_OR_20,
    ("priceRange", "less than £20"): _CHEAP_OR_20,
    ("priceRange", "moderate"): _MODERATE_OR_20_25,
    ("priceRange", "£20-25"): _MODERATE_OR_20_25,
    ("priceRange", "high"): _EXPENSIVE_OR_30,
    ("priceRange", "more than £30"): _EXPENSIVE_OR_30,
    ("customer rating", "1 out of 5"): _rating("1", _LOW_RATING),
    ("customer rating", "low"): _rating("1", _LOW_RATING),
    ("customer rating", "3 out of 5"): _rating("3", _AVERAGE_RATING),
    ("customer rating", "average"): _rating("3", _AVERAGE_RATING),
    ("customer rating", "5 out of 5"): _rating("5", _HIGH_RATING),
    ("customer rating", "high"): _rating("5", _HIGH_RATING),
}
"""(attribute, value) -> a regular expression over the normalized text (lower case, no accents)."""


def _normalize(text: str) -> str:
    """Lower case, accents removed, hyphens and underscores as spaces."""
    stripped = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"[-_]", " ", stripped.lower()).replace("’", "'")


def parse_mr(mr: str) -> list[tuple[str, str]]:
    """The (attribute, value) pairs of an MR string, in order.

    Raises:
        ValueError: when the MR is not a comma-separated list of ``attribute[value]``, naming it.
    """
    pairs, end = [], 0
    for match in _PAIR.finditer(mr):
        if match.start() != end:
            break
        pairs.append((match.group(1), match.group(2)))
        end = match.end()
    if not pairs or end != len(mr):
        raise ValueError(f"not an E2E meaning representation (attribute[value], ...): {mr!r}")
    return pairs


def missing_values(mr: str, text: str) -> list[tuple[str, str]]:
    """The (attribute, value) pairs of ``mr`` that ``text`` does not state.

    Raises:
        KeyError: for a non-literal value without a pattern in :data:`PATTERNS`.
    """
    pairs, normalized = parse_mr(mr), _normalize(text)
    missing = []
    for attribute, value in pairs:  # literal values first, removed so they state nothing else
        if attribute in _LITERAL:
            literal = _normalize(value)
            found = literal in normalized or literal.removeprefix("the ") in normalized
            normalized = normalized.replace(literal.removeprefix("the "), " ")
            if not found:
                missing.append((attribute, value))
    for attribute, value in pairs:
        if attribute in _LITERAL:
            continue
        if attribute == "familyFriendly":
            negated = bool(_NOT_FAMILY.search(normalized))
            found = negated if value == "no" else bool(re.search(_FAMILY, normalized)) and not negated
        elif (attribute, value) in PATTERNS:
            found = bool(re.search(PATTERNS[attribute, value], normalized))
        else:
            raise KeyError(f"no slot pattern for {attribute}[{value}] (MR {mr!r})")
        if not found:
            missing.append((attribute, value))
    return [pair for pair in pairs if pair in missing]


def slot_counts(mrs: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """(n, 2) array: the number of values each text misses and the number of values in its MR.

    >>> slot_counts(["name[Aromi], area[riverside]"], ["Aromi is in the centre."]).tolist()
    [[1, 2]]
    """
    if len(mrs) != len(texts):
        raise ValueError(f"{len(mrs)} MRs for {len(texts)} texts")
    return np.array([[len(missing_values(m, t)), len(parse_mr(m))] for m, t in zip(mrs, texts)], dtype=np.int64)
