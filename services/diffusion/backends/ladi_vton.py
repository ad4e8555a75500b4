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
(`warping_{dataset}.pth`) belongs to the warp stage. Every file must fit its network exactly: a missing, renamed or
unexpected key fails the load with the file and the keys named (`vton.runtime.checkpoints`), never random weights.

Working size: 512x384 (height x width), the size the released checkpoints were trained at, unless the stage's
`VTON_DIFFUSION_SIZE` names another of `RESOLUTIONS` (1024x768: the networks run, but the released weights never
saw it) or a request asks for one. Whatever the size, the result comes back at the person photo's size.

`try_on` prepares the inputs as the release's dataset code does (images in [-1, 1] at the working resolution,
PIL bicubic; the mask binarised, nearest; the pose map in [0, 1]: the request's, bilinear, or drawn from its
keypoints at the working size by `vton.runtime.posemap`), runs `LadiVtonPipeline` with the request's seed, steps,
guidance and scheduler (50, 7.5 and DDIM when unset, as src/inference.py) on a scheduler of its own, resizes the
result back to the person's size and pastes it inside the agnostic mask: every pixel outside the mask is the input
person's.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.utils import logging as hf_logging

from services.diffusion.models import published_configs as P
from services.diffusion.models.autoencoder_kl import EmascAutoencoderKL
from services.diffusion.models.emasc import EMASC, emasc_channels
from services.diffusion.models.inversion_adapter import InversionAdapter
from services.diffusion.models.ladi_unet import build_extended_unet
from services.diffusion.models.text_encoding import CATEGORY_TEXT
from services.diffusion.pipelines.ladi_vton import LadiVtonPipeline
from services.diffusion.types import TryOnInputs
from vton.runtime.checkpoints import WeightsMismatch, load_strict, refuse_mismatch
from vton.runtime.errors import InvalidInput, WeightsMissing
from vton.runtime.options import SCHEDULERS
from vton.runtime.posemap import pose_heatmaps
from vton.runtime.vocab import NUM_KEYPOINTS

DATASETS = ("vitonhd", "dresscode")
SD_DIR = "stable-diffusion-2-inpainting"
CLIP_DIR = "CLIP-ViT-H-14-laion2B-s32B-b79K"
CONFIG_FILE = "vton_config.json"
RESOLUTIONS = (
    (512, 384),
    (1024, 768),
)  # (height, width); the first, the released checkpoints', is the default
SIZE_ENV = "VTON_DIFFUSION_SIZE"  # HEIGHTxWIDTH, as LaDI-VTON writes its sizes: 512x384 or 1024x768
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.5
DEFAULT_SCHEDULER = "ddim"  # src/inference.py's DDIMScheduler
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


def load_official(module: torch.nn.Module, path: Path, what: str) -> None:
    """A released `.pth` into `module`. The release's keys already are this package's module names (the files are
    the official modules' `state_dict()`), so nothing is renamed; any other key set is refused."""
    load_strict(module, torch.load(path, map_location="cpu", weights_only=True), path, what)


def checked_from_pretrained(
    model_class, folder: Path, weights: str, what: str, ignore: tuple[str, ...] = (), **kw
):
    """`model_class.from_pretrained(folder)` refusing what the library would fill with random values or drop:
    a missing, renamed, unexpected (other than those starting with `ignore`) or mis-shaped key."""
    model, info = model_class.from_pretrained(str(folder), output_loading_info=True, **kw)
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith(ignore)]
    refuse_mismatch(folder / weights, what, info["missing_keys"], unexpected)
    problems = list(info.get("mismatched_keys") or []) + list(info.get("error_msgs") or [])
    if problems:
        raise WeightsMismatch(f"{folder / weights} does not fit {what}: {problems}")
    return model


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
    """A new scheduler for one call: DDIM (the official sampler, also for "") or DPM-Solver++ (multistep, order 2,
    good in 20-25 steps), from SD-2's scheduler config."""
    if name in ("", "ddim"):
        return DDIMScheduler.from_config(config)
    if name == "dpm-solver++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    raise InvalidInput(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")


def parse_size(text: str, resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS) -> tuple[int, int]:
    """'512x384' (height x width) -> (512, 384), one of `resolutions`; ValueError naming the setting otherwise."""
    allowed = ", ".join(f"{h}x{w}" for h, w in resolutions)
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{SIZE_ENV}={text!r} is not HEIGHTxWIDTH; LaDI-VTON runs at {allowed}") from None
    if (height, width) not in resolutions:
        raise ValueError(f"{SIZE_ENV}={text!r}: LaDI-VTON runs at {allowed} (height x width)")
    return height, width


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
    """LaDI-VTON's try-on. Build with `from_pretrained(folder)`; call `try_on(TryOnInputs)`, from several threads
    at once if wanted: a call changes nothing the others use."""

    def __init__(
        self,
        pipeline: LadiVtonPipeline,
        dataset: str = "vitonhd",
        resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS,
        scheduler_config: dict | None = None,
        size: tuple[int, int] | None = None,
    ):
        self.pipeline = pipeline
        self.dataset = dataset
        self.resolutions = tuple(tuple(r) for r in resolutions)
        self.scheduler_config = dict(scheduler_config or pipeline.scheduler.config)
        self.size = tuple(size) if size else self.resolutions[0]
        if self.size not in self.resolutions:
            raise ValueError(f"working size {self.size} is not one of {self.resolutions}")

    # -- loading -----------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        folder: Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        dataset: str | None = None,
        size: tuple[int, int] | None = None,
    ) -> LadiVtonBackend:
        """Load the files of `dataset` (default: found from the folder's name and files) from `folder`.

        `size` (height, width) is the working size of requests that name none; default: `VTON_DIFFUSION_SIZE`,
        else the first of the resolutions (512x384 for the released checkpoints).
        """
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
        resolutions = tuple(tuple(r) for r in vton_config.get("resolutions", RESOLUTIONS))
        if size is None and os.environ.get(SIZE_ENV):
            size = parse_size(os.environ[SIZE_ENV], resolutions)
        sd = folder / SD_DIR
        num_vstar = int(vton_config.get("num_vstar", P.NUM_VSTAR))
        int_layers = list(vton_config.get("emasc_int_layers", P.EMASC_INT_LAYERS))

        with _quiet_loading():  # the libraries' chatter; what matters is checked below
            tokenizer = CLIPTokenizer.from_pretrained(str(sd / "tokenizer"))
            text_encoder = checked_from_pretrained(
                CLIPTextModel, sd / "text_encoder", "pytorch_model.bin", "SD-2's text encoder"
            )
            vision_encoder = checked_from_pretrained(
                CLIPVisionModelWithProjection,
                folder / CLIP_DIR,
                "pytorch_model.bin",
                "CLIP ViT-H/14's vision tower",
                # the file is the whole CLIP model; its text tower is not used
                ignore=("text_model.", "text_projection.", "logit_scale"),
                config=_clip_vision_config(folder / CLIP_DIR),
            )
            vae = checked_from_pretrained(
                EmascAutoencoderKL,
                sd / "vae",
                "diffusion_pytorch_model.bin",
                "SD-2's VAE",
                use_safetensors=False,  # the file named in SD_FILES, without a failed look for another
            )
        unet = build_extended_unet(UNet2DConditionModel.load_config(str(sd / "unet")))
        load_official(unet, folder / f"unet_{dataset}.pth", "LaDI-VTON's extended UNet")
        emasc_in, emasc_out = emasc_channels(vae.config, int_layers)
        emasc = EMASC(emasc_in, emasc_out, type=vton_config.get("emasc_type", P.EMASC_TYPE))
        load_official(emasc, folder / f"emasc_{dataset}.pth", "LaDI-VTON's EMASC")
        adapter = InversionAdapter.for_encoders(
            vision_encoder.config, text_encoder.config.hidden_size, num_vstar
        )
        load_official(adapter, folder / f"inversion_adapter_{dataset}.pth", "LaDI-VTON's inversion adapter")
        scheduler_config = dict(DDIMScheduler.load_config(str(sd / "scheduler")))

        pipeline = LadiVtonPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=make_scheduler(DEFAULT_SCHEDULER, scheduler_config),
            emasc=emasc,
            inversion_adapter=adapter,
            vision_encoder=vision_encoder,
            num_vstar=num_vstar,
            emasc_int_layers=int_layers,
        )
        to_device(pipeline, device, dtype)
        return cls(pipeline, dataset, resolutions, scheduler_config, size)

    # -- inference ---------------------------------------------------------------------------------------

    def working_size(self, inputs: TryOnInputs) -> tuple[int, int]:
        if inputs.width == 0 and inputs.height == 0:
            return self.size
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
        if inputs.pose_map is not None and (
            inputs.pose_map.ndim != 3 or inputs.pose_map.shape[0] != NUM_KEYPOINTS
        ):
            raise InvalidInput(f"pose_map must be [{NUM_KEYPOINTS}, H, W]")
        if inputs.keypoints is not None and np.shape(inputs.keypoints) != (NUM_KEYPOINTS, 3):
            raise InvalidInput(f"keypoints must be [{NUM_KEYPOINTS}, 3] (x, y, confidence)")

    def prepare(self, inputs: TryOnInputs, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The pipeline's tensors at `size` (height, width), prepared as the release's dataset code does."""
        h, w = size
        person = _image_tensor(inputs.person, size)
        mask_img = Image.fromarray((inputs.agnostic_mask >= 128).astype(np.uint8) * 255)
        mask = np.asarray(mask_img.resize((w, h), Image.NEAREST)) >= 128
        mask_t = torch.from_numpy(mask.astype(np.float32))[None, None]
        return {
            "image": person,
            "mask": mask_t,
            "pose_map": self.pose_map(inputs, size),
            "warped_garment": _image_tensor(inputs.warped_garment, size),
            "garment": _image_tensor(inputs.garment, size),
        }

    @staticmethod
    def pose_map(inputs: TryOnInputs, size: tuple[int, int]) -> torch.Tensor:
        """[1, 18, H, W] in [0, 1] at `size`: the request's pose map resized, else the release's Gaussians drawn
        from its keypoints at `size`, else zeros (the official pipeline's no_pose option)."""
        h, w = size
        if inputs.pose_map is not None:
            pose = torch.from_numpy(inputs.pose_map.astype(np.float32) / 255.0)[None]
            pose = torch.nn.functional.interpolate(pose, size=size, mode="bilinear", align_corners=False)
            return pose.clamp(0, 1)
        if inputs.keypoints is not None:
            keypoints = np.asarray(inputs.keypoints, np.float32).copy()
            person_h, person_w = inputs.person.shape[:2]
            keypoints[:, :2] *= np.array([w / person_w, h / person_h], np.float32)
            return torch.from_numpy(pose_heatmaps(keypoints, w, h))[None]
        return torch.zeros(1, NUM_KEYPOINTS, h, w)

    def try_on(self, inputs: TryOnInputs) -> np.ndarray:
        """The person wearing the garment: uint8 RGB at the person's size, unchanged outside the mask."""
        self.check(inputs)
        scheduler = make_scheduler(inputs.scheduler, self.scheduler_config)
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
            scheduler=scheduler,
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


def to_device(pipeline: LadiVtonPipeline, device, dtype: torch.dtype) -> None:
    """Every network of `pipeline` onto `device` in `dtype`, in eval mode."""
    with _quiet_loading():  # diffusers warns on any `.to(dtype)`, even with nothing to keep in float32
        for name in ("vae", "text_encoder", "unet", "emasc", "inversion_adapter", "vision_encoder"):
            module = getattr(pipeline, name)
            module.to(device=device, dtype=dtype)
            module.eval()
