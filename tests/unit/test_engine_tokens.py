"""Prompt token reuse (`engine.tokens`) against a pure-Python tokenizer built like llama.cpp's.

The fake splits a text at its special tokens and tokenizes the stretches between them on their
own, as llama.cpp does, into tokens of two bytes (so where a stretch is split matters, as it does
for BPE); variants break the assumptions reuse relies on, and
the reuse must then fall back to tokenizing whole prompts, with the same tokens either way.
"""

from __future__ import annotations

import logging
import threading

import pytest

from ollagraph.agents.engine.tokens import CHECKED_REUSES, PrefixTokenizer

SPECIALS = {b"<s>": 1, b"<|start|>": 2, b"<|end|>": 3}
BOS = 1
BYTE = 1000  # a lone byte b is token BYTE + b
PAIR = 100_000  # two bytes b1 b2 are token PAIR + 256 * b1 + b2
NUMBERED = 1_000_000


class FakeVocab:
    """A llama.cpp-like tokenizer: special tokens split the text; stretches go two bytes a token."""

    def __init__(self, space_prefix: bool = False, numbered: bool = False) -> None:
        self.space_prefix = space_prefix  # SentencePiece-style " " before each stretch
        self.numbered = numbered  # stretch tokens depend on how many came before (breaks reuse)
        self.calls: list[bytes] = []

    def tokenize(self, text: bytes, add_bos: bool) -> list[int]:
        self.calls.append(text)
        tokens = [BOS] if add_bos else []
        position = 0
        stretches = 0
        while position < len(text):
            special = next((s for s in SPECIALS if text.startswith(s, position)), None)
            if special is not None:
                tokens.append(SPECIALS[special])
                position += len(special)
                continue
            end = min(
                [text.find(s, position) for s in SPECIALS if text.find(s, position) >= 0]
                or [len(text)]
            )
            stretch = (b" " if self.space_prefix else b"") + text[position:end]
            shift = NUMBERED * stretches if self.numbered else 0
            for start in range(0, len(stretch), 2):
                two = stretch[start : start + 2]
                token = PAIR + 256 * two[0] + two[1] if len(two) == 2 else BYTE + two[0]
                tokens.append(token + shift)
            stretches += 1
            position = end
        return tokens

    def piece(self, token: int) -> bytes:
        for text, number in SPECIALS.items():
            if number == token:
                return text
        token %= NUMBERED
        if token >= PAIR:
            return bytes(divmod(token - PAIR, 256))
        return bytes([token - BYTE])

    @staticmethod
    def is_special(token: int) -> bool:
        return token in SPECIALS.values()

    def reuser(self, keep: int = 4) -> PrefixTokenizer:
        return PrefixTokenizer(self.tokenize, self.piece, self.is_special, keep=keep)


def chat(turns: int) -> bytes:
    """A rendered chat of `turns` user/assistant exchanges, ending with the assistant's turn."""
    text = b"<|start|>system\nYou answer questions about ducks.<|end|>\n"
    for turn in range(turns):
        text += b"<|start|>user\nquestion %d<|end|>\n" % turn
        if turn < turns - 1:
            text += b"<|start|>assistant\nanswer %d<|end|>\n" % turn
    return text + b"<|start|>assistant\n"


def test_a_growing_chat_tokenizes_only_what_is_new() -> None:
    vocab = FakeVocab()
    reuse = vocab.reuser()
    for turns in range(1, 8):
        text = chat(turns)
        vocab.calls.clear()
        tokens = reuse(text, True)
        assert tokens == FakeVocab().tokenize(text, True)
        if turns > 1 + CHECKED_REUSES:  # past the checks, only the new end is tokenized
            assert vocab.calls == [text[text.rindex(b"<|start|>assistant\nanswer") :]]
    assert reuse.reused_tokens > 0


def test_an_identical_prompt_is_not_tokenized_again() -> None:
    vocab = FakeVocab()
    reuse = vocab.reuser()
    text = chat(3)
    first = reuse(text, False)
    for _ in range(CHECKED_REUSES):
        assert reuse(text, False) == first
    vocab.calls.clear()
    again = reuse(text, False)
    assert again == first and vocab.calls == []
    again.append(99)  # callers get their own list
    assert reuse(text, False) == first


def test_a_prompt_that_differs_inside_a_stretch_reuses_up_to_the_special_token_before() -> None:
    vocab = FakeVocab()
    reuse = vocab.reuser()
    for _ in range(CHECKED_REUSES + 1):
        reuse(b"<|start|>system\nabc<|end|>\n<|start|>user\nhello<|end|>", False)
    vocab.calls.clear()
    text = b"<|start|>system\nabc<|end|>\n<|start|>user\nhelp me<|end|>"
    assert reuse(text, False) == FakeVocab().tokenize(text, False)
    assert vocab.calls == [b"<|start|>user\nhelp me<|end|>"]


def test_a_prompt_without_the_special_token_is_not_cut_there() -> None:
    vocab = FakeVocab()
    reuse = vocab.reuser()
    for _ in range(CHECKED_REUSES + 1):
        reuse(b"<|start|>a<|end|>b<|start|>c", False)
    # the same bytes up to the second <|start|>, where the stretch now goes on
    text = b"<|start|>a<|end|>bcd"
    assert reuse(text, False) == FakeVocab().tokenize(text, False)
    assert vocab.calls[-1] == b"<|end|>bcd"


def test_prompts_with_and_without_bos_are_kept_apart() -> None:
    vocab = FakeVocab()
    reuse = vocab.reuser()
    text = chat(2)
    with_bos = reuse(text, True)
    without = reuse(text, False)
    assert with_bos == [BOS, *without]
    assert reuse(chat(3), True) == FakeVocab().tokenize(chat(3), True)
    assert reuse(chat(3), False) == FakeVocab().tokenize(chat(3), False)


def test_tokens_that_do_not_spell_the_text_give_no_cuts_and_whole_tokenizations() -> None:
    vocab = FakeVocab(space_prefix=True)
    reuse = vocab.reuser()
    for turns in range(1, 6):
        text = chat(turns)
        vocab.calls.clear()
        assert reuse(text, False) == FakeVocab(space_prefix=True).tokenize(text, False)
        assert vocab.calls == [text]
    assert reuse.reused_tokens == 0


def test_a_reuse_that_would_change_the_tokens_turns_reuse_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vocab = FakeVocab(numbered=True)
    reuse = vocab.reuser()
    with caplog.at_level(logging.WARNING):
        for turns in range(1, 6):
            text = chat(turns)
            assert reuse(text, False) == FakeVocab(numbered=True).tokenize(text, False)
    assert not reuse.enabled
    assert "turned off" in caplog.text


def test_only_the_last_prompts_are_kept() -> None:
    reuse = FakeVocab().reuser(keep=2)
    for turns in range(1, 6):
        reuse(chat(turns), False)
    assert len(reuse._entries) == 2
    assert reuse._entries[0].text == chat(5)


def test_threads_tokenizing_at_once_get_their_own_tokens() -> None:
    reuse = FakeVocab().reuser()
    texts = [chat(turns) + b"x" * (turns % 3) for turns in range(1, 9)]
    expected = {text: FakeVocab().tokenize(text, False) for text in texts}
    wrong: list[bytes] = []

    def work(offset: int) -> None:
        for round_ in range(30):
            text = texts[(offset + round_) % len(texts)]
            if reuse(text, False) != expected[text]:
                wrong.append(text)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
