"""A tiny random configuration of LaDI-VTON's networks, for tests and the tiny end-to-end chain.

Same code and same file layout as the published networks, only smaller: every sub-config below replaces
the published one of the same name (see `services.diffusion.models.published_configs`). The tokenizer is a
real CLIP byte-level BPE tokenizer with a vocabulary built here, offline: the 512 byte symbols in CLIP's own
order (so '$</w>', the pseudo-word placeholder, has id 259 as in the real vocabulary), merges for the words
of LaDI-VTON's prompts, and the two special tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

# Sizes of every network; `save_random` writes them as the sub-folder configs plus vton_config.json.
TINY_CONFIG: dict = {
    "dataset": "vitonhd",
    "num_vstar": 16,
    "emasc_int_layers": [1, 2, 3, 4, 5],
    "emasc_type": "nonlinear",
    # working resolutions (height, width), the first is the default: small so that CPU tests are quick
    "resolutions": [[64, 48], [128, 96]],
    "unet": {
        "block_out_channels": [32, 64],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "layers_per_block": 1,
        "attention_head_dim": [2, 4],
        "cross_attention_dim": 32,
        "norm_num_groups": 8,
        "sample_size": 8,
    },
    "vae": {
        "block_out_channels": [8, 16, 16, 16],
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "sample_size": 64,
    },
    "text_encoder": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "projection_dim": 16,
    },
    "vision_encoder": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    },
    "projection_dim": 16,
}

# The words of "a photo of a model wearing {an upper body garment | a lower body garment | a dress}".
_PROMPT_WORDS = ("a", "photo", "of", "model", "wearing", "an", "upper", "body", "garment", "lower", "dress")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map of the 256 byte values to printable characters, in CLIP's order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def tiny_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    for word in _PROMPT_WORDS:
        # build each word left to right: ((("p" "h") "o") "t") "o</w>"
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            pair = (current, piece)
            current = current + piece
            if pair not in merges:
                merges.append(pair)
                vocab_list.append(current)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab: dict[str, int] = {}
    for token in vocab_list:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def write_tiny_tokenizer(folder: Path) -> int:
    """Write a CLIP tokenizer (vocab.json, merges.txt, configs) like SD-2's; returns the vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "!",  # as SD-2's tokenizer pads
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    tokenizer_config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "errors": "replace",
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return len(vocab)
