"""The prompt with pseudo-words: "a photo of a model wearing {category} $ $ ... $", '$' replaced by embeddings.

LaDI-VTON writes `num_vstar` '$' placeholders into the prompt and, after the token-embedding lookup, puts the
inversion adapter's embeddings in their places before the rest of the text encoder runs (positional
embeddings, transformer, final norm). Here a forward hook on the token embedding does the replacement, so the
text encoder's own forward (attention kind, causal mask) runs unchanged whatever the transformers version.

The hook is installed once per text encoder and reads what to splice from a context variable, which is local to
the calling thread: concurrent calls on one text encoder each splice their own words into their own prompts only
(a hook holding one call's words would write them into every other call's forward running meanwhile).
"""

from __future__ import annotations

import threading
from contextvars import ContextVar

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


# (placeholder positions [B, num_vstar], batch rows [B, num_vstar], embeddings [B, num_vstar, D]) of this thread's
# call, or None outside encode_with_pseudo_words
_splice: ContextVar[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = ContextVar(
    "pseudo_word_splice", default=None
)
_install_lock = threading.Lock()


def _splice_pseudo_words(_module, _args, output: torch.Tensor) -> torch.Tensor:
    splice = _splice.get()
    if splice is None:  # an ordinary forward (the empty prompt of classifier-free guidance)
        return output
    positions, batch, words = splice
    output = output.clone()
    output[batch, positions] = words.to(device=output.device, dtype=output.dtype)
    return output


def _install_splice_hook(text_encoder) -> None:
    embedding = text_encoder.get_input_embeddings()
    with _install_lock:
        if not getattr(embedding, "_pseudo_word_hook", False):
            embedding.register_forward_hook(_splice_pseudo_words)
            embedding._pseudo_word_hook = True


def encode_with_pseudo_words(
    text_encoder, input_ids: torch.Tensor, word_embeddings: torch.Tensor, placeholder_id: int
) -> torch.Tensor:
    """Last hidden state [B, 77, D] of the prompt with `word_embeddings` [B, num_vstar, D] at the '$' tokens."""
    num_vstar = word_embeddings.shape[1]
    positions = placeholder_positions(input_ids, placeholder_id, num_vstar).to(input_ids.device)
    batch = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(positions)
    _install_splice_hook(text_encoder)
    token = _splice.set((positions, batch, word_embeddings))
    try:
        return text_encoder(input_ids).last_hidden_state
    finally:
        _splice.reset(token)
