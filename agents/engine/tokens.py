"""Tokenizing a prompt that begins like one tokenized before costs only its new part.

llama.cpp's tokenizer, with special tokens parsed, takes about 1 µs a token on a 2-core CPU (up
to 5.6 µs where special tokens are dense): 1.2-1.4 ms for a 1,200-token agent chat, paid again
at every step although each step's prompt begins with the previous one's (system prompt, tool
schemas, the turns so far). llama.cpp first splits a
text at its special tokens (`<|im_start|>`...) and tokenizes the stretches between them one by
one, so the tokens of a text up to where a special token begins do not depend on what follows.

`PrefixTokenizer` remembers the last few prompts with their tokens. For a new prompt it finds the
longest remembered prefix that ends where a special token begins (a "cut"), reuses the tokens up
to there and tokenizes only the rest; an identical prompt reuses all of them. Cuts are placed from
each token's text, and only where that text is found at the computed place, so a tokenizer whose
tokens do not spell out the prompt byte for byte (a SentencePiece space prefix, a token that
swallows the whitespace beside it) gets no cuts and is tokenized whole. The first reuses are also
checked against a full tokenization; a mismatch turns reuse off for that model.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

KEEP = 4
"""Prompts remembered per model."""

CHECKED_REUSES = 2
"""Reuses compared with a full tokenization before reuse is trusted."""


@dataclass
class _Entry:
    """A tokenized prompt: its bytes, its tokens and where special tokens begin."""

    text: bytes
    add_bos: bool
    tokens: list[int]
    cuts: list[tuple[int, int, int]] = field(default_factory=list)
    """(byte offset, token index, bytes of the special token there), in order."""


class PrefixTokenizer:
    """Tokenizes prompts (special tokens parsed), reusing the tokens of remembered prefixes.

    Thread-safe: requests to one model may tokenize at the same time.

    Args:
        tokenize: The model's tokenizer: `(text, add_bos) -> tokens`, special tokens parsed.
        piece: The text of one token, special tokens spelled out.
        is_special: Whether llama.cpp splits texts at this token (control or user-defined).
        keep: How many prompts to remember.
    """

    def __init__(
        self,
        tokenize: Callable[[bytes, bool], list[int]],
        piece: Callable[[int], bytes],
        is_special: Callable[[int], bool],
        *,
        keep: int = KEEP,
    ) -> None:
        self._tokenize = tokenize
        self._piece = piece
        self._is_special = is_special
        self._pieces: dict[int, bytes] = {}
        self._special: dict[int, bool] = {}
        self._keep = max(1, keep)
        self._entries: deque[_Entry] = deque(maxlen=self._keep)
        self._lock = threading.Lock()
        self._unchecked = CHECKED_REUSES
        self.enabled = True
        self.reused_tokens = 0
        """Tokens taken from remembered prompts so far (for tests and debugging)."""

    def __call__(self, text: bytes, add_bos: bool) -> list[int]:
        """The tokens of `text`, with a BOS token first when `add_bos`."""
        with self._lock:
            found = self._best(text, add_bos) if self.enabled else None
        if found is None:
            entry = _Entry(text, add_bos, self._tokenize(text, add_bos))
            self._add_cuts(entry, 0, 0)
        else:
            known, offset, index, before = found
            if offset == len(text):  # the same prompt again
                tokens = known.tokens
            else:
                tokens = known.tokens[:index] + self._tokenize(text[offset:], False)
            if self._unchecked > 0 and not self._check(text, add_bos, tokens):
                return self._tokenize(text, add_bos)
            self.reused_tokens += index
            if offset == len(text):
                entry = known
            else:
                entry = _Entry(text, add_bos, tokens, known.cuts[:before])
                self._add_cuts(entry, offset, index)
        with self._lock:
            kept = [e for e in self._entries if e.text != text or e.add_bos != add_bos]
            self._entries = deque([entry, *kept[: self._keep - 1]], maxlen=self._keep)
        return list(entry.tokens)

    def _check(self, text: bytes, add_bos: bool, tokens: list[int]) -> bool:
        """Compare a reuse with a full tokenization; on a mismatch turn reuse off."""
        whole = self._tokenize(text, add_bos)
        with self._lock:
            self._unchecked -= 1
            if whole == tokens:
                return True
            self.enabled = False
            self._entries.clear()
        logger.warning("reusing a prompt's tokens gave other tokens than tokenizing it; turned off")
        return False

    def _best(self, text: bytes, add_bos: bool) -> tuple[_Entry, int, int, int] | None:
        """The remembered prompt sharing the longest usable prefix with `text`.

        Returns:
            (entry, bytes reused, tokens reused, cuts before the one used), or None.
        """
        best: tuple[_Entry, int, int, int] | None = None
        for entry in self._entries:
            if entry.add_bos != add_bos:
                continue
            if entry.text == text:
                return entry, len(text), len(entry.tokens), len(entry.cuts)
            found = _longest_cut(text, entry)
            if found is not None and (best is None or found[0] > best[1]):
                best = (entry, *found)
        return best

    def _add_cuts(self, entry: _Entry, offset: int, index: int) -> None:
        """Add the cuts of `entry`'s tokens from `index` on, whose text starts at `offset`."""
        text, tokens = entry.text, entry.tokens
        if index == 0 and entry.add_bos and tokens:
            index = 1  # the BOS token added in front is not in the text
        for position in range(index, len(tokens)):
            token = tokens[position]
            piece = self._pieces.get(token)
            if piece is None:
                piece = self._pieces[token] = self._piece(token)
            special = self._special.get(token)
            if special is None:
                special = self._special[token] = self._is_special(token)
            if special:
                if text[offset : offset + len(piece)] != piece:
                    return  # the tokens do not spell out the text here: no cuts from now on
                if offset > 0:
                    entry.cuts.append((offset, position, len(piece)))
            offset += len(piece)


def _longest_cut(text: bytes, entry: _Entry) -> tuple[int, int, int] | None:
    """The last cut of `entry` with the same bytes before it, and the same special token, in `text`.

    Returns:
        (byte offset, token index, cuts before it), or None.
    """
    cuts = entry.cuts
    known = entry.text
    low, high = 0, len(cuts)
    while low < high:  # how many cuts have their prefix in common (a monotone property)
        middle = (low + high) // 2
        offset = cuts[middle][0]
        if text[:offset] == known[:offset]:
            low = middle + 1
        else:
            high = middle
    for number in range(low - 1, -1, -1):
        offset, index, length = cuts[number]
        if text[offset : offset + length] == known[offset : offset + length]:
            return offset, index, number
    return None


__all__ = ["CHECKED_REUSES", "KEEP", "PrefixTokenizer"]
