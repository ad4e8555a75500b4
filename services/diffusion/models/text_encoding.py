"""The prompt with pseudo-words: "a photo of a model wearing {category} $ $ ... $", '$' replaced by embeddings.

LaDI-VTON writes `num_vstar` '$' placeholders into the prompt and, after the token-embedding lookup, puts the
inversion adapter's embeddings in their places before the rest of the text encoder runs (positional
embeddings, transformer, final norm). Here a forward hook on the token embedding does the replacement, so the
text encoder's own forward (attention kind, causal mask) runs unchanged whatever the transformers version.
"""

from __future__ import annotations

import torch

# src/inference.py of miccunifi/ladi-vton
CATEGORY_TEXT = {
    "upper_body": "an upper body garment",
    "lower_body": "a lower body garment",
    "dresses": "a dress",
}
PLACEHOLDER_TOKEN = "$</w>"  # id 259 in CLIP's vocabulary


def tryon_prompt(category: str, num_vstar: int) -> str:
    if category not in CATEGORY_TEXT:
        raise ValueError(f"category must be one of {', '.join(CATEGORY_TEXT)}, not {category!r}")
    return f"a photo of a model wearing {CATEGORY_TEXT[category]} {' $ ' * num_vstar}"


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    return tokenizer(
        prompts,
        max_length=tokenizer.model_max_length,
        padding="max_length",
        truncation=True,
        return_tensors="pt",
    ).input_ids


def placeholder_positions(input_ids: torch.Tensor, placeholder_id: int, num_vstar: int) -> torch.Tensor:
    """[B, num_vstar] token positions of each row's first `num_vstar` placeholders."""
    rows = []
    for row in input_ids:
        where = (row == placeholder_id).nonzero(as_tuple=True)[0]
        if len(where) < num_vstar:
            raise ValueError(f"the prompt holds {len(where)} placeholders, {num_vstar} are needed")
        rows.append(where[:num_vstar])
    return torch.stack(rows)


def encode_with_pseudo_words(
    text_encoder, input_ids: torch.Tensor, word_embeddings: torch.Tensor, placeholder_id: int
) -> torch.Tensor:
    """Last hidden state [B, 77, D] of the prompt with `word_embeddings` [B, num_vstar, D] at the '$' tokens."""
    num_vstar = word_embeddings.shape[1]
    positions = placeholder_positions(input_ids, placeholder_id, num_vstar).to(input_ids.device)
    batch = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(positions)

    def splice(_module, _args, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[batch, positions] = word_embeddings.to(device=output.device, dtype=output.dtype)
        return output

    handle = text_encoder.get_input_embeddings().register_forward_hook(splice)
    try:
        return text_encoder(input_ids).last_hidden_state
    finally:
        handle.remove()
