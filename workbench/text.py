"""Text cleaning shared by task loaders, data preparation and consistency testing.

It sits below ``tasks`` and ``lifecycle`` so that loading a task never imports the lifecycle layer.
"""

from __future__ import annotations

import re
import string
import unicodedata

# Penn Treebank escapes of brackets and quotes (lower-case forms occur in lower-cased corpora).
_PTB_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}
_PTB_BRACKET = re.compile("|".join(_PTB_BRACKETS), flags=re.IGNORECASE)
_OPEN_QUOTE = re.compile(r"``\s*")
_CLOSE_QUOTE = re.compile(r"\s*''")
_CLITIC = re.compile(r"\s+(n't|'(?:s|re|ve|ll|d|m))\b", flags=re.IGNORECASE)
_PLURAL_POSSESSIVE = re.compile(r"(\ws) '(?=\s|$)")  # "the actors ' work" -> "the actors' work"
_SPLIT_CONTRACTION = re.compile(r"\b(gon|wan|got) (na|ta)\b", flags=re.IGNORECASE)  # "gon na" -> "gonna"
_SPACE_BEFORE = re.compile(r"\s+([.,!?;:%)\]}])")
_SPACE_AFTER = re.compile(r"([(\[{$#])\s+")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")


def normalize_whitespace(text: str) -> str:
    """Collapse all Unicode whitespace runs into one space, drop zero-width characters, strip.

    >>> normalize_whitespace("  a\\u00a0 film\\n\\twith\\u200b  heart ")
    'a film with heart'
    """
    return " ".join(_ZERO_WIDTH.sub("", text).split())


def detokenize_ptb(text: str) -> str:
    """Turn Penn-Treebank-tokenised text (as in SST or PTB) back into ordinary text.

    Bracket escapes (``-LRB-`` ...) and ````...''`` quotes become plain characters, and split
    clitics (" 's", " n't") and punctuation are re-attached to their words.

    >>> print(detokenize_ptb("it 's a film , really ."))
    it's a film, really.
    >>> print(detokenize_ptb("-LRB- the director 's cut -RRB- is n't `` great '' ..."))
    (the director's cut) isn't "great"...
    >>> print(detokenize_ptb("you ca n't say the actors ' work is gon na cost $ 5 !"))
    you can't say the actors' work is gonna cost $5!
    """
    text = _PTB_BRACKET.sub(lambda match: _PTB_BRACKETS[match.group(0).upper()], text)
    # Opening and closing quotes differ in PTB, so each side knows which way to attach.
    text = _CLOSE_QUOTE.sub('"', _OPEN_QUOTE.sub('"', text))
    text = _CLITIC.sub(r"\1", text)
    text = _PLURAL_POSSESSIVE.sub(r"\1'", text)
    text = _SPLIT_CONTRACTION.sub(r"\1\2", text)
    text = _SPACE_BEFORE.sub(r"\1", text)
    text = _SPACE_AFTER.sub(r"\1", text)
    return normalize_whitespace(text)


def clean_text(text: str, ptb: bool = True) -> str:
    """Unicode NFC, optional PTB detokenisation, and whitespace normalisation.

    Args:
        text: raw text.
        ptb: undo Penn Treebank tokenisation (leave False for text that was never tokenised:
            it would join a genuine " ," that an author typed, which is harmless but not needed).

    >>> print(clean_text("  a  -LRB- very -RRB-   good film .\\n"))
    a (very) good film.
    """
    text = unicodedata.normalize("NFC", text)
    return detokenize_ptb(text) if ptb else normalize_whitespace(text)


def normalized_key(text: str) -> str:
    """The key under which near-identical texts collide: case, punctuation and spacing ignored.

    >>> normalized_key("It's  a FILM!") == normalized_key("its a film")
    True
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    without_punctuation = "".join(ch for ch in folded if not unicodedata.category(ch).startswith("P"))
    return " ".join(without_punctuation.split())


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD answer normalisation: lowercase, drop ASCII punctuation and articles, squeeze spaces.

    >>> squad_normalize("The  Eiffel-Tower!")
    'eiffeltower'
    """
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())
