"""LaDI-VTON's try-on (Morelli et al., ACM MM 2023) as a diffusion backend, loading the official files unchanged.

Folder layout (the backend's folder in the models directory, e.g. `<models>/ladi-vton-vitonhd/`; every name is
the one its publisher uses):

    unet_{dataset}.pth                     extended UNet state dict        github.com/miccunifi/ladi-vton
    emasc_{dataset}.pth                    EMASC state dict                  releases/download/weights/
    inversion_adapter_{dataset}.pth        inversion adapter state dict
    stable-diffusion-2-inpainting/         hf:stabilityai/stable-diffusion-2-inpainting (diffusers layout)
        unet/config.json                   the UNet's shape (its weights are not needed: unet_{dataset}.pth)
        vae/config.json, vae/diffusion_pytorch_model.bin
        text_encoder/config.json, text_encoder/pytorch_model.bin
        tokenizer/vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json
        scheduler/scheduler_config.json
    CLIP-ViT-H-14-laion2B-s32B-b79K/       hf:laion/CLIP-ViT-H-14-laion2B-s32B-b79K (transformers layout)
        config.json, pytorch_model.bin     the whole CLIP model; only its vision tower is loaded
    vton_config.json                       only for tiny test networks: overrides num_vstar, EMASC layers,
                                           resolutions (the sub-folder configs give the network sizes)

`{dataset}` is `vitonhd` or `dresscode` (found from the files present). The warping module
(`warping_{dataset}.pth`) belongs to the warp stage.

`try_on` prepares the inputs as the release's dataset code does (images in [-1, 1] at the working resolution,
PIL bicubic; the mask binarised, nearest; the pose map in [0, 1], bilinear), runs `LadiVtonPipeline` with
the request's seed, steps and guidance (50 and 7.5 when 0, as src/inference.py), resizes the result back to the
person's size and pastes it inside the agnostic mask: every pixel outside the mask is the input person's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging
from PIL import Image
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)
from transformers.utils import logging as hf_logging

from services.diffusion.models import published_configs as P
from services.diffusion.models.autoencoder_kl import EmascAutoencoderKL
from services.diffusion.models.emasc import EMASC, emasc_channels
from services.diffusion.models.inversion_adapter import InversionAdapter
from services.diffusion.models.ladi_unet import build_extended_unet, extended_unet_config
from services.diffusion.models.text_encoding import CATEGORY_TEXT
from services.diffusion.pipelines.ladi_vton import LadiVtonPipeline
from services.diffusion.tiny import TINY_CONFIG, write_tiny_tokenizer
from services.diffusion.types import TryOnInputs
from vton.runtime.errors import InvalidInput, WeightsMissing

DATASETS = ("vitonhd", "dresscode")
SD_DIR = "stable-diffusion-2-inpainting"
CLIP_DIR = "CLIP-ViT-H-14-laion2B-s32B-b79K"
CONFIG_FILE = "vton_config.json"
RESOLUTIONS = ((512, 384), (1024, 768))  # (height, width); the first is the default
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.5
SCHEDULERS = ("ddim", "dpm++")
RELEASE_URL = "https://github.com/miccunifi/ladi-vton/releases/download/weights"

SD_FILES = (
    "unet/config.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.bin",
    "text_encoder/config.json",
    "text_encoder/pytorch_model.bin",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
    "scheduler/scheduler_config.json",
)
CLIP_FILES = ("config.json", "pytorch_model.bin")


def release_files(dataset: str) -> dict[str, str]:
    """LaDI-VTON's own files for `dataset`: {file name in the folder: release URL}."""
    names = (f"unet_{dataset}.pth", f"emasc_{dataset}.pth", f"inversion_adapter_{dataset}.pth")
    return {name: f"{RELEASE_URL}/{name}" for name in names}


def required_files(dataset: str) -> list[str]:
    """Every file the backend reads, relative to its folder."""
    return (
        list(release_files(dataset))
        + [f"{SD_DIR}/{f}" for f in SD_FILES]
        + [f"{CLIP_DIR}/{f}" for f in CLIP_FILES]
    )


def load_official_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A released `.pth` as a state dict. The release's keys already are this package's module names
    (the files are the official modules' `state_dict()`), so nothing is renamed."""
    return torch.load(path, map_location="cpu", weights_only=True)


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence the libraries' expected load-time chatter: the CLIP file's text tower reported as unused keys,
    the `.bin` (not safetensors) files SD-2 ships, progress bars."""
    levels = hf_logging.get_verbosity(), diffusers_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    diffusers_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(levels[0])
        diffusers_logging.set_verbosity(levels[1])
        if bars:
            hf_logging.enable_progress_bar()


def make_scheduler(name: str, config: dict):
    """DDIM (the official sampler) or DPM-Solver++ (multistep, order 2) from SD-2's scheduler config."""
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    if name == "dpm++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, not {name!r}")


def _read_vton_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _detect_dataset(folder: Path, vton_config: dict) -> str:
    if vton_config.get("dataset") in DATASETS:
        return vton_config["dataset"]
    for dataset in DATASETS:
        if folder.name.endswith(dataset) and (folder / f"unet_{dataset}.pth").is_file():
            return dataset
    for dataset in DATASETS:
        if (folder / f"unet_{dataset}.pth").is_file():
            return dataset
    raise WeightsMissing(
        f"no LaDI-VTON checkpoint (unet_vitonhd.pth or unet_dresscode.pth) in {folder}; "
        "get them with `vton weights pull ladi-vton-vitonhd` (or ladi-vton-dresscode)"
    )


def _clip_vision_config(folder: Path) -> CLIPVisionConfig:
    """The vision tower's config from a CLIP folder, its projection width taken from the whole model's."""
    raw = json.loads((folder / "config.json").read_text())
    config = CLIPVisionConfig.from_pretrained(str(folder))
    if "vision_config" in raw and raw.get("projection_dim"):
        config.projection_dim = raw["projection_dim"]
    return config


class LadiVtonBackend:
    """LaDI-VTON's try-on. Build with `from_pretrained(folder)`; call `try_on(TryOnInputs)`."""

    def __init__(
        self,
        pipeline: LadiVtonPipeline,
        dataset: str = "vitonhd",
        resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS,
        scheduler_config: dict | None = None,
    ):
        self.pipeline = pipeline
        self.dataset = dataset
        self.resolutions = tuple(tuple(r) for r in resolutions)
        self.scheduler_config = dict(scheduler_config or pipeline.scheduler.config)
        self.scheduler_name = "ddim"

    # -- loading -----------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        folder: Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        scheduler: str = "ddim",
        dataset: str | None = None,
    ) -> LadiVtonBackend:
        """Load the files of `dataset` (default: found from the folder's name and files) from `folder`."""
        folder = Path(folder)
        vton_config = _read_vton_config(folder)
        if dataset is not None and dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, not {dataset!r}")
        dataset = dataset or _detect_dataset(folder, vton_config)
        missing = [f for f in required_files(dataset) if not (folder / f).is_file()]
        if missing:
            raise WeightsMissing(
                f"LaDI-VTON ({dataset}) needs {', '.join(missing)} in {folder}; "
                f"get them with `vton weights pull ladi-vton-{dataset}`"
            )
        sd = folder / SD_DIR
        num_vstar = int(vton_config.get("num_vstar", P.NUM_VSTAR))
        int_layers = list(vton_config.get("emasc_int_layers", P.EMASC_INT_LAYERS))

        with _quiet_loading():
            tokenizer = CLIPTokenizer.from_pretrained(str(sd / "tokenizer"))
            text_encoder = CLIPTextModel.from_pretrained(str(sd / "text_encoder"))
            vision_encoder = CLIPVisionModelWithProjection.from_pretrained(
                str(folder / CLIP_DIR), config=_clip_vision_config(folder / CLIP_DIR)
            )
            vae = EmascAutoencoderKL.from_pretrained(str(sd / "vae"))
        unet = build_extended_unet(UNet2DConditionModel.load_config(str(sd / "unet")))
        unet.load_state_dict(load_official_state_dict(folder / f"unet_{dataset}.pth"), strict=True)
        emasc_in, emasc_out = emasc_channels(vae.config, int_layers)
        emasc = EMASC(emasc_in, emasc_out, type=vton_config.get("emasc_type", P.EMASC_TYPE))
        emasc.load_state_dict(load_official_state_dict(folder / f"emasc_{dataset}.pth"), strict=True)
        adapter = InversionAdapter.for_encoders(
            vision_encoder.config, text_encoder.config.hidden_size, num_vstar
        )
        adapter.load_state_dict(
            load_official_state_dict(folder / f"inversion_adapter_{dataset}.pth"), strict=True
        )
        scheduler_config = dict(DDIMScheduler.load_config(str(sd / "scheduler")))

        pipeline = LadiVtonPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=make_scheduler(scheduler, scheduler_config),
            emasc=emasc,
            inversion_adapter=adapter,
            vision_encoder=vision_encoder,
            num_vstar=num_vstar,
            emasc_int_layers=int_layers,
        )
        _to(pipeline, device, dtype)
        resolutions = tuple(tuple(r) for r in vton_config.get("resolutions", RESOLUTIONS))
        backend = cls(pipeline, dataset, resolutions, scheduler_config)
        backend.scheduler_name = scheduler
        return backend

    def use_scheduler(self, name: str) -> None:
        """Switch the sampler: "ddim" (official) or "dpm++" (DPM-Solver++, good in ~20-25 steps)."""
        self.pipeline.scheduler = make_scheduler(name, self.scheduler_config)
        self.scheduler_name = name

    # -- inference ---------------------------------------------------------------------------------------

    def working_size(self, inputs: TryOnInputs) -> tuple[int, int]:
        if inputs.width == 0 and inputs.height == 0:
            return self.resolutions[0]
        size = (inputs.height, inputs.width)
        if size not in self.resolutions:
            allowed = ", ".join(f"{w}x{h}" for h, w in self.resolutions)
            raise InvalidInput(
                f"LaDI-VTON runs at {allowed} (width x height), not {inputs.width}x{inputs.height}"
            )
        return size

    def check(self, inputs: TryOnInputs) -> None:
        if inputs.category not in CATEGORY_TEXT:
            raise InvalidInput(f"category must be one of {', '.join(CATEGORY_TEXT)}, not {inputs.category!r}")
        if self.dataset == "vitonhd" and inputs.category != "upper_body":
            raise InvalidInput(
                "the VITON-HD checkpoint dresses upper_body garments only; use ladi-vton-dresscode"
            )
        h, w = inputs.person.shape[:2]
        if inputs.agnostic_mask.shape[:2] != (h, w) or inputs.warped_garment.shape[:2] != (h, w):
            raise InvalidInput("agnostic_mask and warped_garment must have the person's size")
        if inputs.pose_map is not None and (inputs.pose_map.ndim != 3 or inputs.pose_map.shape[0] != 18):
            raise InvalidInput("pose_map must be [18, H, W]")

    def prepare(self, inputs: TryOnInputs, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The pipeline's tensors at `size` (height, width), prepared as the release's dataset code does."""
        h, w = size
        person = _image_tensor(inputs.person, size)
        mask_img = Image.fromarray((inputs.agnostic_mask >= 128).astype(np.uint8) * 255)
        mask = np.asarray(mask_img.resize((w, h), Image.NEAREST)) >= 128
        mask_t = torch.from_numpy(mask.astype(np.float32))[None, None]
        if inputs.pose_map is None:
            # no keypoints: the UNet gets an empty pose map (the official pipeline's no_pose option)
            pose = torch.zeros(1, 18, h, w)
        else:
            pose = torch.from_numpy(inputs.pose_map.astype(np.float32) / 255.0)[None]
            pose = torch.nn.functional.interpolate(pose, size=size, mode="bilinear", align_corners=False)
        return {
            "image": person,
            "mask": mask_t,
            "pose_map": pose.clamp(0, 1),
            "warped_garment": _image_tensor(inputs.warped_garment, size),
            "garment": _image_tensor(inputs.garment, size),
        }

    def try_on(self, inputs: TryOnInputs) -> np.ndarray:
        """The person wearing the garment: uint8 RGB at the person's size, unchanged outside the mask."""
        self.check(inputs)
        size = self.working_size(inputs)
        tensors = self.prepare(inputs, size)
        generator = torch.Generator("cpu").manual_seed(int(inputs.seed))
        image = self.pipeline(
            **tensors,
            category=inputs.category,
            num_inference_steps=inputs.steps or DEFAULT_STEPS,
            guidance_scale=inputs.guidance_scale or DEFAULT_GUIDANCE,
            generator=generator,
            output_type="np",
            on_step=inputs.on_step,
        )[0]
        generated = (image * 255).round().astype(np.uint8)
        h, w = inputs.person.shape[:2]
        if generated.shape[:2] != (h, w):
            generated = np.asarray(Image.fromarray(generated).resize((w, h), Image.BICUBIC))
        inside = (inputs.agnostic_mask >= 128)[..., None]
        return np.where(inside, generated, inputs.person).astype(np.uint8)


def _image_tensor(rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 RGB -> [1, 3, H, W] in [-1, 1] at `size`, resized with PIL's bicubic as the dataset code does."""
    h, w = size
    img = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
    if img.size != (w, h):
        img = img.resize((w, h), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
    return x.permute(2, 0, 1)[None].contiguous()


def _to(pipeline: LadiVtonPipeline, device, dtype: torch.dtype) -> None:
    with _quiet_loading():  # diffusers warns on any `.to(dtype)`, even with nothing to keep in float32
        for name in ("vae", "text_encoder", "unet", "emasc", "inversion_adapter", "vision_encoder"):
            module = getattr(pipeline, name)
            module.to(device=device, dtype=dtype)
            module.eval()


# -- random networks: tiny (tests) and published size (benchmarks) ---------------------------------------


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
    torch.save(_legacy_vae_keys(vae.state_dict()), sd / "vae" / "diffusion_pytorch_model.bin")

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
    The tokenizer is the small offline one of `tiny.py` (SD-2's vocabulary is a download); the prompt is still
    77 tokens, so the compute is the published model's.
    """
    import tempfile

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
        scheduler=make_scheduler("ddim", P.SD2_SCHEDULER),
        emasc=emasc,
        inversion_adapter=adapter,
        vision_encoder=vision_encoder,
        num_vstar=P.NUM_VSTAR,
        emasc_int_layers=P.EMASC_INT_LAYERS,
    )
    _to(pipeline, device, dtype)
    return LadiVtonBackend(pipeline, dataset, RESOLUTIONS, dict(P.SD2_SCHEDULER))


def _legacy_vae_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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
