"""The tokenizer of the package's byte-level models, saved beside every checkpoint.

The models read UTF-8 bytes: token id = byte value (0-255). Saved as a byte-level BPE without merges
(GPT-2's byte-to-character table, so every byte is one token whose id is its value), a checkpoint folder
loads in lm-evaluation-harness and any transformers tool (``AutoTokenizer.from_pretrained``) as it is.
The models were trained on raw bytes with no special tokens; the newline byte stands in for the end
(and start) of a text, as in :mod:`bayesladder.evaluation.scoring`: it is the tokenizer's end-of-text token,
which lm-eval puts before an empty context and uses as padding. (As a special token, a literal U+010A "Ċ"
in the input, the table's character for the newline byte, also reads as a newline.)
"""

from __future__ import annotations

from pathlib import Path


def byte_characters() -> list[str]:
    """GPT-2's table: the printable character standing for each byte value, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return [table[byte] for byte in range(256)]


def byte_tokenizer(max_length: int):
    """A transformers fast tokenizer whose ids are the text's UTF-8 bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: byte for byte, char in enumerate(byte_characters())}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    newline = byte_characters()[ord("\n")]
    return PreTrainedTokenizerFast(tokenizer_object=core, model_max_length=max_length, eos_token=newline)


def save(folder: Path, max_length: int) -> None:
    byte_tokenizer(max_length).save_pretrained(folder)
