"""SmolLM2's tokenizer (opml.ml.tokenizer) against HF ``tokenizers`` 0.23.3 built from the same GGUF
vocabulary and merges (BPE, ``smollm`` pre-tokenizer = individual digits then byte-level, byte-level
decoder): the same ids on Python's own documentation text, on edge cases and on seeded random strings;
pinned ids; round trips; the chat prompt; and each rejection as a TokenizerError."""

import pydoc_data.topics
import random
import time

import gguf
import pytest
from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from opml.ml.tokenizer import (
    CHAT_TEMPLATE,
    CONTROL,
    DEFAULT_SYSTEM,
    NORMAL,
    Tokenizer,
    TokenizerError,
    pre_tokens,
    smollm2_gguf,
)

# A fixed selection of ≥ 3,000 tokens (about 11,000 on Python 3.11).
TOPICS = ("assignment", "formatstrings", "strings")

EDGE_CASES = [
    "",
    "12345",
    "3.14",
    "x=1e-10, y = -2_000",
    " 2024 ",
    "a  1",
    " ",
    "   ",
    "a   b",
    "a \t b",
    "\t\t\n",
    "\n",
    "\n\n\n",
    "line one\nline two\r\n\r\nend",
    "  leading and trailing  ",
    "café naïve résumé Ærøskøbing",
    "日本語のテキスト、中文文本。한국어",
    "emoji 😀👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷",
    "it's we're I'll they've he'd I'm don't IT'S 'quoted' ''s",
    "½ ² Ⅻ ٣٤ 一二三",
    "\x1c\x1e\x1f are not blanks; \x85 \xa0 \u3000 \u2028 are",
    "def f(x):\n    return x ** 2  # square\n",
    "<|im_start|><|im_end|><|endoftext|>",
    "<|im_start <|im_end| |im_start|> <jupyter_code>print(1)<jupyter_output>",
    "before<|im_start|>user\nHi<|im_end|>after",
]

# Bytes without a token (0x04 here, the lead byte 0xf1 of chr(0x40000)) are dropped by both.
DROPPED = ["\x04", "a\x04b", "x\U00040000y"]


@pytest.fixture(scope="module")
def reader() -> gguf.GGUFReader:
    """The SmolLM2 GGUF, parsed once (seconds) for both tokenizers."""
    return gguf.GGUFReader(smollm2_gguf())


@pytest.fixture(scope="module")
def fields(reader) -> dict:
    keys = ("tokens", "token_type", "merges", "eos_token_id")
    return {key: reader.get_field(f"tokenizer.ggml.{key}").contents() for key in keys}


@pytest.fixture(scope="module")
def tok(reader) -> Tokenizer:
    return Tokenizer.from_reader(reader)


@pytest.fixture(scope="module")
def hf(fields) -> HFTokenizer:
    """SmolLM2's tokenizer.json rebuilt from the GGUF's fields."""
    tokens = fields["tokens"]
    bpe = models.BPE(
        vocab={text: i for i, text in enumerate(tokens)},
        merges=[tuple(merge.split(" ")) for merge in fields["merges"]],
    )
    ref = HFTokenizer(bpe)
    ref.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    ref.decoder = decoders.ByteLevel()
    controls = [text for text, kind in zip(tokens, fields["token_type"], strict=True) if kind == CONTROL]
    ref.add_special_tokens([AddedToken(text, special=True, normalized=False) for text in controls])
    return ref


def hf_ids(hf: HFTokenizer, text: str) -> list[int]:
    return hf.encode(text, add_special_tokens=False).ids


def topics_text() -> str:
    return "\n\n".join(pydoc_data.topics.topics[key] for key in TOPICS)


# --- the file's vocabulary ------------------------------------------------------------------------


def test_vocabulary_of_the_file(tok, fields):
    assert tok.vocab_size == len(fields["tokens"]) == 49_152
    assert len(fields["merges"]) == 48_900
    assert tok.eos_id == 2
    assert [tok.decode([i]) for i in range(3)] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert [i for i, kind in enumerate(fields["token_type"]) if kind != NORMAL] == list(range(17))


def test_pinned_ids(tok):
    assert tok.encode("The capital of France") == [504, 3575, 282, 4649]
    assert tok.encode("Hello, world!") == [19556, 28, 905, 17]
    assert tok.encode("12345") == [33, 34, 35, 36, 37]  # every digit alone
    assert tok.encode("3.14") == [35, 30, 33, 36]
    assert tok.encode(" 2024") == [216, 34, 32, 34, 36]  # the space does not join the digit
    assert tok.encode("it's") == [269, 506]
    assert tok.encode("<|im_start|>user\nHi<|im_end|>\n") == [1, 4093, 198, 26843, 2, 198]


def test_pre_tokens():
    assert pre_tokens("a  1") == ["a", "  ", "1"]
    assert pre_tokens("Hi  there\n\n x") == ["Hi", " ", " there", "\n\n", " x"]
    assert pre_tokens("I'M it's ''s") == ["I", "'", "M", " it", "'s", " ''", "s"]
    assert pre_tokens("\x1c\x1c b") == ["\x1c\x1c", " b"]  # U+001C is not White_Space
    assert pre_tokens("") == []


# --- against HF tokenizers ------------------------------------------------------------------------


def test_documentation_text_matches_hf(tok, hf, fields):
    text = topics_text()
    # A fresh tokenizer, so that no pre-token is cached: a few thousand tokens in well under a second.
    fresh = Tokenizer(fields["tokens"], fields["token_type"], fields["merges"], fields["eos_token_id"])
    start = time.perf_counter()
    ids = fresh.encode(text)
    elapsed = time.perf_counter() - start
    assert len(ids) >= 3_000
    assert elapsed < 2.0, f"{len(ids)} tokens took {elapsed:.2f} s"
    assert ids == hf_ids(hf, text)
    assert tok.decode(ids) == text


@pytest.mark.parametrize(
    "word", ["z" * 20_000, " " * 20_000 + "x", "=" * 20_000], ids=["letters", "blanks", "others"]
)
def test_a_long_word_is_not_quadratic(hf, fields, word):
    fresh = Tokenizer(fields["tokens"], fields["token_type"], fields["merges"], fields["eos_token_id"])
    start = time.perf_counter()
    ids = fresh.encode(word)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"{len(word)} characters took {elapsed:.2f} s"
    assert ids == hf_ids(hf, word)


def test_every_topic_matches_hf(tok, hf):
    for key in sorted(pydoc_data.topics.topics):
        text = pydoc_data.topics.topics[key]
        assert tok.encode(text) == hf_ids(hf, text), key


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_match_hf_and_round_trip(tok, hf, text):
    ids = tok.encode(text)
    assert ids == hf_ids(hf, text)
    assert tok.decode(ids) == text
    assert b"".join(tok.token_bytes(i) for i in ids) == text.encode()


@pytest.mark.parametrize("text", DROPPED)
def test_bytes_without_a_token_are_dropped_as_hf_drops_them(tok, hf, text):
    ids = tok.encode(text)
    assert ids == hf_ids(hf, text)
    assert tok.decode(ids) == text.encode().replace(b"\x04", b"").replace(b"\xf1", b"").decode(
        errors="replace"
    )


def test_seeded_random_strings_match_hf(tok, hf):
    rng = random.Random(19)
    alphabet = [
        *map(chr, range(0x20, 0x7F)),
        *map(chr, range(0xA0, 0x250)),
        *map(chr, range(0x2000, 0x2070)),
        *map(chr, range(0x3000, 0x3040)),
        *map(chr, range(0x4E00, 0x4E40)),
        *map(chr, range(0x1F600, 0x1F650)),
        *"\t\n\r\x0b\x0c\x1c\x1d\x85\u0660\u0663\u216b\xbd\xb2",
        *["'s", "'re", "'ll", " '", "  ", "\n\n", "<|im_start|>", "<|im_end|>", "<|endoftext|>"],
    ]
    for _ in range(2_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        ids = tok.encode(text)
        assert ids == hf_ids(hf, text), repr(text)
        cut = rng.randint(0, len(ids))  # may split a character: both replace the broken bytes alike
        assert tok.decode(ids[:cut]) == hf.decode(ids[:cut], skip_special_tokens=False), repr(text)


# --- chat prompt ----------------------------------------------------------------------------------


def test_chat_template_of_the_file(tok):
    assert tok.chat_template == CHAT_TEMPLATE
    assert DEFAULT_SYSTEM in CHAT_TEMPLATE


def test_chat_prompt(tok, hf):
    prompt = tok.chat_prompt("What is the capital of France?")
    assert prompt == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = tok.encode(prompt)
    assert ids == hf_ids(hf, prompt)
    assert ids[:3] == [1, 9690, 198]  # <|im_start|> system \n
    assert ids[-4:] == [1, 520, 9531, 198]  # <|im_start|> assistant \n
    assert ids.count(1) == 3 and ids.count(2) == 2
    assert tok.decode(ids) == prompt


def test_chat_prompt_with_own_system_line(tok):
    assert tok.chat_prompt("Hi", system="Be brief.") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


# --- rejections -----------------------------------------------------------------------------------


def write_gguf(path, **fields) -> str:
    """A GGUF with no tensors and the given ``tokenizer.ggml.*`` fields (strings, or lists)."""
    writer = gguf.GGUFWriter(path, arch="llama")
    adders = {
        "model": writer.add_tokenizer_model,
        "pre": writer.add_tokenizer_pre,
        "tokens": writer.add_token_list,
        "token_type": writer.add_token_types,
        "merges": writer.add_token_merges,
        "eos_token_id": writer.add_eos_token_id,
        "add_bos_token": writer.add_add_bos_token,
    }
    for key, value in fields.items():
        adders[key](value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


TOY = dict(
    model="gpt2", pre="smollm", tokens=["<s>", "a", "b", "ab"], token_type=[3, 1, 1, 1], merges=["a b"]
)


def test_a_toy_gguf_loads(tmp_path):
    toy = Tokenizer.from_gguf(write_gguf(tmp_path / "toy.gguf", **TOY, eos_token_id=0, add_bos_token=False))
    assert toy.encode("<s>abba") == [0, 3, 2, 1]
    assert toy.encode("c") == []
    assert toy.chat_template is None
    with pytest.raises(TokenizerError, match="not SmolLM2's"):
        toy.chat_prompt("Hi")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "llama"}, "tokenizer.ggml.model = 'llama'; only 'gpt2'"),
        ({"pre": "gpt-2"}, "tokenizer.ggml.pre = 'gpt-2'; only 'smollm'"),
        ({"merges": None}, "has no tokenizer.ggml.merges"),
        ({"eos_token_id": None}, "has no tokenizer.ggml.eos_token_id"),
        ({"eos_token_id": 4}, "eos id 4 is outside"),
        ({"add_bos_token": True}, "asks for a BOS token"),
        ({"token_type": [3, 1, 1, 6]}, "has type 6"),
        ({"token_type": [3, 1, 1]}, "4 tokens but 3 token types"),
        ({"merges": ["a c"]}, "merge 0 'a c'"),
        ({"merges": ["a b c"]}, "merge 0 'a b c'"),
        ({"tokens": ["<s>", "a", "b", "a b"]}, "not written in GPT-2's byte characters"),
    ],
)
def test_rejections(tmp_path, change, message):
    fields = {**TOY, "eos_token_id": 0, **change}
    path = write_gguf(tmp_path / "bad.gguf", **{k: v for k, v in fields.items() if v is not None})
    with pytest.raises(TokenizerError, match=message):
        Tokenizer.from_gguf(path)


def test_ids_outside_the_vocabulary(tok):
    for bad in (-1, tok.vocab_size):
        with pytest.raises(TokenizerError, match="outside the vocabulary"):
            tok.token_bytes(bad)
        with pytest.raises(TokenizerError, match="outside the vocabulary"):
            tok.decode([5, bad])
