"""LaDI-VTON's networks with random weights, for tests (a tiny configuration written in the official files and
layout) and GPU benchmarks (published sizes, in memory). Nothing here is used to serve a request.

The tiny configuration is the same code and the same file layout as the published networks, only smaller: every
sub-config of `TINY_CONFIG` replaces the published one of the same name (see
`services.diffusion.models.published_configs`). The tokenizer is a real CLIP byte-level BPE tokenizer with a
vocabulary built here, offline: the 512 byte symbols in CLIP's own order (so '$</w>', the pseudo-word placeholder,
has id 259 as in the real vocabulary), merges for the words of LaDI-VTON's prompts, and the two special tokens.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from services.diffusion.backends.ladi_vton import (
    CLIP_DIR,
    CONFIG_FILE,
    DEFAULT_SCHEDULER,
    RESOLUTIONS,
    SD_DIR,
    LadiVtonBackend,
    make_scheduler,
    to_device,
)
from services.diffusion.models import published_configs as P
from services.diffusion.models.autoencoder_kl import EmascAutoencoderKL
from services.diffusion.models.emasc import EMASC, emasc_channels
from services.diffusion.models.inversion_adapter import InversionAdapter
from services.diffusion.models.ladi_unet import build_extended_unet, extended_unet_config
from services.diffusion.pipelines.ladi_vton import LadiVtonPipeline

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


def _sub_configs(config: dict) -> dict[str, dict]:
    """Every network's config: the published one updated with `config`'s overrides."""
    return {
        "unet": {**P.SD2_INPAINTING_UNET, **config.get("unet", {})},
        "vae": {**P.SD2_VAE, **config.get("vae", {})},
        "text_encoder": {**P.SD2_TEXT_ENCODER, **config.get("text_encoder", {})},
        "vision_encoder": {**P.CLIP_VIT_H_14_VISION, **config.get("vision_encoder", {})},
        "clip_text": {**P.CLIP_VIT_H_14_TEXT, **config.get("clip_text", config.get("text_encoder", {}))},
    }


def save_random(folder: Path, config: dict = TINY_CONFIG, seed: int = 0) -> Path:
    """Write random networks of `config`'s sizes in the official files and layout (see the module docstring),
    plus `vton_config.json`; returns `folder`. Tiny sizes by default; `from_pretrained(folder)` loads them.

    Formats as published: the release's `.pth` state dicts; SD-2's `.bin` files, the text encoder's keys under
    `text_model.` and the VAE's attention under its 2022 names (query/key/value/proj_attn), which diffusers
    converts on load; the whole CLIP model (text and vision towers) in the laion folder.
    """
    folder = Path(folder)
    dataset = config.get("dataset", "vitonhd")
    sub = _sub_configs(config)
    sd = folder / SD_DIR
    torch.manual_seed(seed)

    vocab_size = write_tiny_tokenizer(sd / "tokenizer")
    text_cfg = {**sub["text_encoder"], "vocab_size": vocab_size}
    # CLIP's own text config names the tokenizer's bos/eos ids, the last two of the tiny vocabulary
    clip_text_cfg = {**sub["clip_text"], "vocab_size": vocab_size}
    clip_text_cfg.update(bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1)

    unet = build_extended_unet(sub["unet"])
    _write_json(sd / "unet" / "config.json", {"_class_name": "UNet2DConditionModel", **sub["unet"]})
    torch.save(unet.state_dict(), folder / f"unet_{dataset}.pth")

    vae = EmascAutoencoderKL.from_config(sub["vae"])
    _write_json(sd / "vae" / "config.json", {"_class_name": "AutoencoderKL", **sub["vae"]})
    torch.save(legacy_vae_keys(vae.state_dict()), sd / "vae" / "diffusion_pytorch_model.bin")

    text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    (sd / "text_encoder").mkdir(parents=True, exist_ok=True)
    text_encoder.config.to_json_file(str(sd / "text_encoder" / "config.json"))
    state = {f"text_model.{k}": v for k, v in text_encoder.state_dict().items()}
    state["text_model.embeddings.position_ids"] = torch.arange(text_cfg["max_position_embeddings"])[None]
    torch.save(state, sd / "text_encoder" / "pytorch_model.bin")

    _write_json(sd / "scheduler" / "scheduler_config.json", P.SD2_SCHEDULER)

    projection_dim = config.get("projection_dim", P.CLIP_VIT_H_14_PROJECTION_DIM)
    clip_config = CLIPConfig(
        text_config={**clip_text_cfg, "projection_dim": projection_dim},
        vision_config={**sub["vision_encoder"], "projection_dim": projection_dim},
        projection_dim=projection_dim,
    )
    clip = CLIPModel(clip_config)
    (folder / CLIP_DIR).mkdir(parents=True, exist_ok=True)
    clip_config.to_json_file(str(folder / CLIP_DIR / "config.json"))
    torch.save(clip.state_dict(), folder / CLIP_DIR / "pytorch_model.bin")

    int_layers = list(config.get("emasc_int_layers", P.EMASC_INT_LAYERS))
    emasc_in, emasc_out = emasc_channels(vae.config, int_layers)
    emasc = EMASC(emasc_in, emasc_out, type=config.get("emasc_type", P.EMASC_TYPE))
    torch.save(emasc.state_dict(), folder / f"emasc_{dataset}.pth")

    num_vstar = int(config.get("num_vstar", P.NUM_VSTAR))
    vision_config = CLIPVisionConfig(**sub["vision_encoder"])
    adapter = InversionAdapter.for_encoders(vision_config, text_cfg["hidden_size"], num_vstar)
    torch.save(adapter.state_dict(), folder / f"inversion_adapter_{dataset}.pth")

    keep = ("dataset", "num_vstar", "emasc_int_layers", "emasc_type", "resolutions")
    _write_json(folder / CONFIG_FILE, {k: config[k] for k in keep if k in config})
    return folder


def build_full_size_random(
    device: str | torch.device = "cuda", dtype: torch.dtype = torch.float16, dataset: str = "vitonhd"
) -> LadiVtonBackend:
    """Every network at its published size with random weights, no file read: for GPU benchmarks.

    Returns a `LadiVtonBackend` on `device` in `dtype`, ready for `try_on` at 512x384 and 1024x768; its
    `.pipeline` (a `LadiVtonPipeline`) holds the networks: `.unet` (865M parameters, 31 input channels),
    `.vae` (84M, with EMASC paths), `.text_encoder` (OpenCLIP ViT-H text, 23 layers, 340M), `.vision_encoder`
    (CLIP ViT-H/14 vision, 632M), `.inversion_adapter` (136M), `.emasc` (8M) and `.scheduler` (DDIM).
    The tokenizer is the small offline one of `write_tiny_tokenizer` (SD-2's vocabulary is a download); the prompt is still
    77 tokens, so the compute is the published model's.
    """
    sub = _sub_configs({})
    with tempfile.TemporaryDirectory() as tmp:
        write_tiny_tokenizer(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(extended_unet_config(sub["unet"]))
        vae = EmascAutoencoderKL.from_config(sub["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**sub["text_encoder"]))
        vision_config = CLIPVisionConfig(**sub["vision_encoder"])
        vision_encoder = CLIPVisionModelWithProjection(vision_config)
        emasc_in, emasc_out = emasc_channels(vae.config, P.EMASC_INT_LAYERS)
        emasc = EMASC(emasc_in, emasc_out, type=P.EMASC_TYPE)
        adapter = InversionAdapter.for_encoders(
            vision_config, sub["text_encoder"]["hidden_size"], P.NUM_VSTAR
        )
    pipeline = LadiVtonPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=make_scheduler(DEFAULT_SCHEDULER, P.SD2_SCHEDULER),
        emasc=emasc,
        inversion_adapter=adapter,
        vision_encoder=vision_encoder,
        num_vstar=P.NUM_VSTAR,
        emasc_int_layers=P.EMASC_INT_LAYERS,
    )
    to_device(pipeline, device, dtype)
    return LadiVtonBackend(pipeline, dataset, RESOLUTIONS, dict(P.SD2_SCHEDULER))


def legacy_vae_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' current VAE attention names -> the names SD-2's 2022 VAE file uses."""
    renames = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    out = {}
    for key, value in state.items():
        for new, old in renames.items():
            if ".attentions." in key and new in key:
                key = key.replace(new, old)
        out[key] = value
    return out


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
