from __future__ import annotations

import pytest
from conftest import tiny_config
from vqa_ref.tokenizer import Tokenizer, VocabError, build_vocab, check_vocab, split_question

TOK = tiny_config()["text"]["tokenizer"]  # remove .,'!?"()*#:;  to_space -/  max_length 6


@pytest.mark.parametrize("question,tokens", [
    ("What color is the shape?", ["what", "color", "is", "the", "shape"]),
    ("Is it RED-circle/Square?!", ["is", "it", "red", "circle", "square"]),
    ("the man's (\"big\") hat: yes; no*#", ["the", "mans", "big", "hat", "yes", "no"]),
    ("a\tb\nc\x0bd\x0ce\rf  g", ["a", "b", "c", "d", "e", "f", "g"]),
    ("", []),
    ("   \t\n", []),
    ("?!.,", []),
    ("- / -", []),
    ("ÉTÉ Café", ["ÉtÉ", "café"]),  # only ASCII A-Z are lowered; É stays
    ("naïve\u00a0word", ["naïve\u00a0word"]),  # NO-BREAK SPACE is not ASCII whitespace
    ("x\x1cy", ["x\x1cy"]),  # nor are the ASCII separators \x1c-\x1f
    ("a-b--c", ["a", "b", "c"]),
])
def test_split(question: str, tokens: list[str]) -> None:
    assert split_question(question, TOK) == tokens


def test_split_accepts_utf8_bytes() -> None:
    assert split_question("Größe?".encode(), TOK) == ["größe"]


def test_encode_unknown_truncate_pad() -> None:
    vocab = build_vocab(["what color is the shape", "is there a red circle"], TOK)
    assert list(vocab.items())[:4] == [("<pad>", 0), ("<unk>", 1), ("what", 2), ("color", 3)]
    tok = Tokenizer(TOK, vocab)
    assert tok.encode("What color is the zebra?") == ([2, 3, 4, 5, 1, 0], 5)
    ids, n = tok.encode("is there a red circle or is there the shape")
    assert n == 6 and ids == [4, 7, 8, 9, 10, 1]
    assert tok.is_truncated("is there a red circle or is there the shape")
    assert tok.encode("?!") == ([0] * 6, 0)
    assert tok.encode("") == ([0] * 6, 0)
    assert tok.encode("Ünïcode") == ([1, 0, 0, 0, 0, 0], 1)


def test_full_config_accepted() -> None:
    cfg = tiny_config()
    vocab = build_vocab(["a b"], cfg)
    assert Tokenizer(cfg, vocab).encode("b a") == ([3, 2, 0, 0, 0, 0], 2)


def test_build_vocab_ids_skip_pad_and_unk() -> None:
    tok = dict(TOK, pad_id=1, unk_id=3)
    vocab = build_vocab(["w0 w1 w2 w1 <unk>"], tok)
    assert vocab == {"<pad>": 1, "<unk>": 3, "w0": 0, "w1": 2, "w2": 4}
    check_vocab(vocab, tok, vocab_size=5)


@pytest.mark.parametrize("vocab,message", [
    ({"<pad>": 0, "<unk>": 1, "a": 1}, "id 1 used twice"),
    ({"<pad>": 0, "<unk>": 1, "a": 7}, "outside [0, 5)"),
    ({"<pad>": 0, "a": 1}, "'<unk>'"),
    ({"<pad>": 1, "<unk>": 0}, "'<pad>'"),
    ({"<pad>": 0, "<unk>": 1, "a": "2"}, "expected an int id"),
])
def test_bad_vocab(vocab: dict, message: str) -> None:
    with pytest.raises(VocabError, match=message.replace("[", r"\[").replace(")", r"\)").replace("(", r"\(")):
        check_vocab(vocab, TOK, vocab_size=5)
