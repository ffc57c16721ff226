"""Focus tokens with the real CLIP BPE tokenizer (shipped files, offline)."""

import pytest

from lusd.errors import PromptError
from lusd.focus import focus_token_indices, focus_words, resolve_focus
from lusd.tokenizer import clip_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer()


def tokens_at(tokenizer, prompt, positions):
    ids = tokenizer(prompt).input_ids
    return [tokenizer.convert_ids_to_tokens(ids[p]) for p in positions]


def test_tokenizer_is_the_real_clip_vocabulary(tokenizer):
    assert len(tokenizer) == 49408
    assert tokenizer("a cat").input_ids == [49406, 320, 2368, 49407]


@pytest.mark.parametrize(
    ("source", "target", "words"),
    [
        ("a cat", "a cat wearing a party hat", ["party", "hat"]),
        ("a cup of coffee", "a cup of matcha", ["matcha"]),
        ("a red circle", "a green circle", ["circle"]),  # adjective change extends to the noun
        ("a red circle", "a red circle and a blue square", ["square"]),
        ("", "a dog", ["dog"]),
        ("a photo of a dog", "a photo of a dog", []),
    ],
)
def test_spec_examples(tokenizer, source, target, words):
    assert focus_words(source, target) == words
    positions = focus_token_indices(tokenizer, source, target)
    assert tokens_at(tokenizer, target, positions) == [w + "</w>" for w in words]


@pytest.mark.parametrize(
    ("source", "target", "words"),
    [
        # the authors' rule ran on from "left" (tagged as a verb) to "background"
        (
            "a red circle on a white background",
            "a red circle and a blue square on the left on a white background",
            ["square"],
        ),
        ("a red circle", "a red circle and a blue square at the top", ["square"]),
        ("a circle on the left", "a circle on the right", []),  # a move adds no object
        ("a circle at the top", "a circle at the very top", []),
    ],
)
def test_places_end_a_span_and_are_never_focus_words(source, target, words):
    assert focus_words(source, target) == words


@pytest.mark.parametrize(
    ("source", "target", "words"),
    [
        # the differing span "a dragonfly and" ends on a conjunction, so the authors' rule
        # runs on to the next noun; "dragonfly" (not in the tagger's lexicon, guessed RB
        # from its suffix) is a noun by its place, as NLTK's tagger reads it
        ("a dog", "a dragonfly and a dog", ["dragonfly", "dog"]),
        ("a cat", "a cat and a firefly", ["firefly"]),
        ("a dog", "a dog next to a dragonfly", ["dragonfly"]),
        ("a cat", "a cat sitting happily", []),  # a known adverb stays an adverb
    ],
)
def test_unknown_words_ending_a_noun_phrase_are_nouns(tokenizer, source, target, words):
    assert focus_words(source, target) == words
    positions = focus_token_indices(tokenizer, source, target)
    assert tokens_at(tokenizer, target, positions) == [w + "</w>" for w in words]


def test_positions_count_sub_tokens(tokenizer):
    # "quokka" is three BPE pieces (qu, ok, ka): its position is the last piece, and the
    # words after it are shifted by the extra pieces
    target = "a quokka wearing a hat"
    assert tokenizer.tokenize("quokka") == ["qu", "ok", "ka</w>"]
    positions = focus_token_indices(tokenizer, "a", target)
    assert tokens_at(tokenizer, target, positions) == ["ka</w>", "hat</w>"]
    assert positions == [4, 7]


def test_explicit_focus_overrides(tokenizer):
    words, positions = resolve_focus(tokenizer, "a cat", "a cat wearing a party hat", ["hat"])
    assert words == ["hat"] and positions == [6]
    with pytest.raises(PromptError, match="does not occur"):
        resolve_focus(tokenizer, "a cat", "a cat wearing a hat", ["dog"])
    with pytest.raises(PromptError, match="empty"):
        resolve_focus(tokenizer, "a cat", "a cat", ["  ,"])


def test_punctuation_and_case(tokenizer):
    assert focus_words("A cat.", "A Cat, wearing a HAT!") == ["hat"]
    positions = focus_token_indices(tokenizer, "A cat.", "A Cat, wearing a HAT!")
    assert tokens_at(tokenizer, "A Cat, wearing a HAT!", positions) == ["hat</w>"]
