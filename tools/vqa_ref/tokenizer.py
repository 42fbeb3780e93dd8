"""Question tokenizer of docs/model-format.md §3, on UTF-8 bytes (no Unicode case folding or splitting)."""

from __future__ import annotations

from typing import Iterable

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
_ASCII_UPPER = bytes(range(ord("A"), ord("Z") + 1))
_ASCII_LOWER = bytes(range(ord("a"), ord("z") + 1))
_LOWERCASE = bytes.maketrans(_ASCII_UPPER, _ASCII_LOWER)


class VocabError(ValueError):
    """vocab.json does not follow docs/model-format.md §3/§9."""


def _tokenizer_block(cfg: dict) -> dict:
    """Accept the text.tokenizer block or a whole config."""
    return cfg["text"]["tokenizer"] if "text" in cfg else cfg


def split_question(question: str | bytes, cfg_tokenizer: dict) -> list[str]:
    """Steps 1-3: lowercase ASCII, delete `remove` bytes, `to_space` bytes -> space, split on ASCII whitespace."""
    tok = _tokenizer_block(cfg_tokenizer)
    data = question.encode("utf-8") if isinstance(question, str) else bytes(question)
    if tok["lowercase"]:
        data = data.translate(_LOWERCASE)
    data = data.translate(None, tok["remove"].encode("ascii"))
    to_space = tok["to_space"].encode("ascii")
    data = data.translate(bytes.maketrans(to_space, b" " * len(to_space)))
    # bytes.split() with no separator splits on runs of ASCII space, \t, \n, \v, \f, \r only.
    # Only ASCII bytes were removed or replaced, so each piece of valid UTF-8 input stays valid UTF-8.
    return [piece.decode("utf-8", errors="surrogateescape") for piece in data.split()]


def check_vocab(vocab: dict, cfg_tokenizer: dict, vocab_size: int | None = None, source: str = "vocab.json") -> None:
    """Ids unique and in [0, vocab_size); <pad> and <unk> at pad_id and unk_id."""
    tok = _tokenizer_block(cfg_tokenizer)
    if not isinstance(vocab, dict):
        raise VocabError(f"{source}: expected a JSON object {{token: id}}, got {type(vocab).__name__}")
    seen: dict[int, str] = {}
    for token, idx in vocab.items():
        if not isinstance(token, str) or not isinstance(idx, int) or isinstance(idx, bool):
            raise VocabError(f"{source}: entry {token!r}: expected an int id, got {idx!r}")
        if idx < 0 or (vocab_size is not None and idx >= vocab_size):
            bound = f"[0, {vocab_size})" if vocab_size is not None else ">= 0"
            raise VocabError(f"{source}: entry {token!r}: id {idx} outside {bound}")
        if idx in seen:
            raise VocabError(f"{source}: id {idx} used twice ({seen[idx]!r} and {token!r})")
        seen[idx] = token
    for token, key in ((PAD_TOKEN, "pad_id"), (UNK_TOKEN, "unk_id")):
        if vocab.get(token) != tok[key]:
            raise VocabError(f"{source}: expected {token!r} with id text.tokenizer.{key}={tok[key]}, "
                             f"got {vocab.get(token)!r}")


class Tokenizer:
    """encode(question) -> (ids of length max_length, n valid ids)."""

    def __init__(self, cfg_tokenizer: dict, vocab: dict[str, int]) -> None:
        self.cfg = _tokenizer_block(cfg_tokenizer)
        check_vocab(vocab, self.cfg)
        self.vocab = vocab
        self.max_length: int = self.cfg["max_length"]
        self.pad_id: int = self.cfg["pad_id"]
        self.unk_id: int = self.cfg["unk_id"]

    def tokens(self, question: str | bytes) -> list[str]:
        return split_question(question, self.cfg)

    def encode(self, question: str | bytes) -> tuple[list[int], int]:
        ids = [self.vocab.get(tok, self.unk_id) for tok in self.tokens(question)][: self.max_length]
        n = len(ids)
        return ids + [self.pad_id] * (self.max_length - n), n

    def is_truncated(self, question: str | bytes) -> bool:
        return len(self.tokens(question)) > self.max_length


def build_vocab(questions: Iterable[str], cfg_tokenizer: dict) -> dict[str, int]:
    """<pad> and <unk> at their ids, then every token in first-seen order on the smallest free ids."""
    tok = _tokenizer_block(cfg_tokenizer)
    vocab = {PAD_TOKEN: tok["pad_id"], UNK_TOKEN: tok["unk_id"]}
    used = set(vocab.values())
    next_id = 0
    for question in questions:
        for token in split_question(question, tok):
            if token in vocab:
                continue
            while next_id in used:
                next_id += 1
            vocab[token] = next_id
            used.add(next_id)
    return vocab
