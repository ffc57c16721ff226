"""Focus tokens: the nouns that the target prompt adds, and their token positions.

Implements the authors' rule (LUSD_SPEC, "Focus tokens") with an offline
part-of-speech tagger (TextBlob's Pattern tagger, whose lexicon ships in the wheel).
"""

from __future__ import annotations

import re
from functools import lru_cache

from lusd.errors import PromptError

_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")  # letters of any script, digits
_NOUN_TAGS = ("NN", "NNS")
# Articles/determiners and prepositions: a span ending on one of these is not extended.
_STOP_TAGS = ("DT", "IN")
# Tags before and after a noun phrase's head (for words the tagger's lexicon lacks).
_PHRASE_OPENERS = frozenset({"DT", "JJ", "PRP$", "CD"})
_PHRASE_ENDS = frozenset({"END", "CC", "IN", "TO", ",", "."})
# Our refinement of the authors' rule: places in the picture are nouns ("on the left") that
# end a span but are never focus words; the tagger reads "left" as a verb, and the span then
# ran on to a later noun such as "background".
_PLACE_WORDS = frozenset({"left", "right", "top", "bottom", "middle", "center", "centre"})


def split_words(prompt: str) -> list[str]:
    """Lower-cased words of a prompt, punctuation dropped."""
    return _WORD.findall(prompt.lower())


@lru_cache(maxsize=1)
def _tagger():
    from textblob.en.taggers import PatternTagger

    return PatternTagger()


def pos_tags(words: list[str]) -> list[str]:
    """Penn Treebank tags of ``words``, one per word (offline)."""
    if not words:
        return []
    tagged = _tagger().tag(" ".join(words), tokenize=False)
    if len(tagged) != len(words):  # the tagger split differently: tag word by word
        tagged = [_tagger().tag(w, tokenize=False)[0] for w in words]
    return _unknown_heads_as_nouns(words, [tag for _, tag in tagged])


def _unknown_heads_as_nouns(words: list[str], tags: list[str]) -> list[str]:
    """Tag as a noun a word the lexicon lacks that ends a noun phrase ("a dragonfly and").

    The Pattern tagger guesses unknown words from their suffix ("dragonfly" -> RB), where
    the authors' tagger (NLTK's perceptron) reads the context: after a determiner or an
    adjective and before a conjunction, a preposition, a verb or the end, it is the noun.
    """
    from textblob.en import lexicon

    out = list(tags)
    for i, word in enumerate(words):
        if out[i].startswith("NN") or word in lexicon or i == 0:
            continue
        after = out[i + 1] if i + 1 < len(out) else "END"
        if out[i - 1] in _PHRASE_OPENERS and (after in _PHRASE_ENDS or after.startswith("VB")):
            out[i] = "NN"
    return out


def focus_word_positions(source_prompt: str, target_prompt: str) -> list[int]:
    """Indices (into ``split_words(target_prompt)``) of the focus words."""
    source, target = split_words(source_prompt), split_words(target_prompt)
    suffix = 0
    while suffix < min(len(source), len(target)) and source[-1 - suffix] == target[-1 - suffix]:
        suffix += 1
    source_core = source[: len(source) - suffix]
    target_core = target[: len(target) - suffix]
    differing = [
        i for i, word in enumerate(target_core) if i >= len(source_core) or source_core[i] != word
    ]
    if not differing:
        return []
    tags = pos_tags(target)
    places = {i for i, word in enumerate(target) if word in _PLACE_WORDS}
    positions = [i for i in differing if tags[i] in _NOUN_TAGS and i not in places]
    last = differing[-1]
    if last in places:
        return positions
    if not tags[last].startswith(_NOUN_TAGS[0]) and tags[last] not in _STOP_TAGS:
        following_noun = next(
            (j for j in range(last + 1, len(target)) if tags[j] in _NOUN_TAGS or j in places),
            None,
        )
        if following_noun is not None and following_noun not in places:
            positions.append(following_noun)
    return positions


def focus_words(source_prompt: str, target_prompt: str) -> list[str]:
    """The focus words, e.g. "a cat" -> "a cat wearing a party hat" gives ["party", "hat"]."""
    target = split_words(target_prompt)
    return [target[i] for i in focus_word_positions(source_prompt, target_prompt)]


def token_positions(tokenizer, prompt: str, words: list[str]) -> list[int]:
    """Sequence positions (0 = start token) of the last sub-token of each word, in order.

    Raises PromptError for a word that is not in the prompt.
    """
    tokens = tokenizer.tokenize(prompt)
    positions: list[int] = []
    cursor = 0
    for word in words:
        pieces = tokenizer.tokenize(word)
        start = _find(tokens, pieces, cursor)
        if start is None:
            start = _find(tokens, pieces, 0)  # focus words given out of order
        if start is None:
            raise PromptError(f"focus word {word!r} does not occur in the target prompt {prompt!r}")
        end = start + len(pieces)
        positions.append(end)  # +1 for the start token, -1 for the last piece
        cursor = end
    limit = tokenizer.model_max_length - 1
    return sorted({p for p in positions if p < limit})


def _find(tokens: list[str], pieces: list[str], start: int) -> int | None:
    for i in range(start, len(tokens) - len(pieces) + 1):
        if tokens[i : i + len(pieces)] == pieces:
            return i
    return None


def focus_token_indices(tokenizer, source_prompt: str, target_prompt: str) -> list[int]:
    """Token positions of the automatic focus words of the target prompt."""
    return token_positions(tokenizer, target_prompt, focus_words(source_prompt, target_prompt))


def resolve_focus(
    tokenizer, source_prompt: str, target_prompt: str, focus: list[str] | None = None
) -> tuple[list[str], list[int]]:
    """Focus words and token positions: the user's ``focus`` words if given, else automatic."""
    if focus:
        words = [w for item in focus for w in split_words(item)]
        if not words:
            raise PromptError("the focus words are empty: give words from the target prompt")
    else:
        words = focus_words(source_prompt, target_prompt)
    return words, token_positions(tokenizer, target_prompt, words)
