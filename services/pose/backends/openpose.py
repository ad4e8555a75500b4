"""OpenPose body (COCO-18) as a pose backend: multi-scale network maps, peaks, PAF limb scoring, people assembly.

The official weights are `body_pose_model.pth` (CMU's COCO body model converted to torch; lllyasviel/Annotators on
Hugging Face). The steps follow CMU's reference demo (and its torch ports):

1. For each scale s the photo is resized so its height is s * 368, padded right/bottom to a multiple of 8 with
   grey (128), fed as BGR / 256 - 0.5; the 1/8-resolution outputs are upsampled x8 (bicubic), the padding cut off
   and the result resized to the photo's size. Heatmaps and PAFs are averaged over the scales.
2. Peaks: per part, the heatmap smoothed with a Gaussian (sigma 3) has a local maximum over its 4 neighbours above
   0.1; the peak's score is the unsmoothed heatmap value there.
3. Limbs: for every pair of candidate parts of a limb, the PAF is sampled at 10 points along the segment and
   projected on its direction; a pair is kept when more than 80% of the samples exceed 0.05 and the mean (with a
   penalty for limbs longer than half the image height) is positive. Pairs are taken greedily by score, each part
   at most once per limb.
4. People: limbs are joined into people through the parts they share (two partial people joined by a limb merge
   when they have no part in common); people with fewer than 4 parts or a mean score below 0.4 are dropped.

The largest person (the area of the box around their keypoints) is returned; `people_detected` counts them all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from services.pose.models.openpose_body import BodyPoseModel, OpenPoseConfig, module_key_from_checkpoint
from services.pose.types import PoseEstimate
from vton.runtime.checkpoints import check_keys, load_strict
from vton.runtime.errors import NoPersonFound, WeightsMissing
from vton.runtime.images import require_rgb
from vton.runtime.vocab import LIMBS as SKELETON_LIMBS
from vton.runtime.vocab import NUM_KEYPOINTS, Keypoint

CHECKPOINT = "body_pose_model.pth"
CONFIG_FILE = "vton_config.json"

BOX_SIZE = 368  # network input height at scale 1
STRIDE = 8
PAD_VALUE = 128
PEAK_THRESHOLD = 0.1
PAF_THRESHOLD = 0.05
PAF_SAMPLES = 10
PEAK_SIGMA = 3.0
MIN_PARTS = 4
MIN_MEAN_SCORE = 0.4

# The network's 19 limbs: the 17 of the skeleton (a tree), then the two shoulder-ear links, which only attach parts
# to existing people. Each is (part A, part B, PAF channel of x, PAF channel of y).
EAR_LINKS = ((Keypoint.R_SHOULDER, Keypoint.R_EAR), (Keypoint.L_SHOULDER, Keypoint.L_EAR))
PAF_CHANNELS = (
    (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11),
    (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27),
)  # fmt: skip
LIMBS: tuple[tuple[int, int, int, int], ...] = tuple(
    (int(a), int(b), x, y) for (a, b), (x, y) in zip(SKELETON_LIMBS + EAR_LINKS, PAF_CHANNELS, strict=True)
)
TREE_LIMBS = len(SKELETON_LIMBS)


@dataclass
class Person:
    """One assembled person: for each part the index of its candidate (-1 = missing), and the running totals."""

    parts: np.ndarray = field(default_factory=lambda: np.full(NUM_KEYPOINTS, -1, np.int64))
    score: float = 0.0  # sum of the part scores and the limb scores
    count: int = 0  # number of parts


def find_peaks(
    heatmaps: np.ndarray, threshold: float = PEAK_THRESHOLD, sigma: float = PEAK_SIGMA
) -> list[np.ndarray]:
    """Per part (the first 18 channels of [H, W, C]): [n, 3] float (x, y, score) of its peaks, in row-major order."""
    radius = int(4 * sigma + 0.5)  # the Gaussian truncated at 4 sigma
    peaks = []
    for part in range(NUM_KEYPOINTS):
        raw = np.ascontiguousarray(heatmaps[:, :, part], dtype=np.float32)
        smooth = cv2.GaussianBlur(raw, (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_REFLECT)
        padded = np.pad(smooth, 1)  # zeros outside: a border pixel only needs to beat its inner neighbours
        centre = padded[1:-1, 1:-1]
        is_peak = (
            (centre >= padded[:-2, 1:-1])
            & (centre >= padded[2:, 1:-1])
            & (centre >= padded[1:-1, :-2])
            & (centre >= padded[1:-1, 2:])
            & (centre > threshold)
        )
        ys, xs = np.nonzero(is_peak)
        peaks.append(np.stack([xs, ys, raw[ys, xs]], axis=1).astype(np.float64))
    return peaks


def score_limb(
    pafs: np.ndarray, limb: tuple[int, int, int, int], a: np.ndarray, b: np.ndarray, height: int
) -> float | None:
    """The PAF score of the segment a -> b (x, y), or None when the field does not support it."""
    vector = b[:2] - a[:2]
    norm = max(float(np.hypot(*vector)), 1e-3)
    direction = vector / norm
    xs = np.round(np.linspace(a[0], b[0], PAF_SAMPLES)).astype(int)
    ys = np.round(np.linspace(a[1], b[1], PAF_SAMPLES)).astype(int)
    along = pafs[ys, xs, limb[2]] * direction[0] + pafs[ys, xs, limb[3]] * direction[1]
    score = float(along.mean()) + min(0.5 * height / norm - 1.0, 0.0)
    if np.count_nonzero(along > PAF_THRESHOLD) > 0.8 * PAF_SAMPLES and score > 0:
        return score
    return None


def connect_limbs(peaks: list[np.ndarray], pafs: np.ndarray, height: int) -> list[np.ndarray]:
    """Per limb: [m, 3] (candidate index of A, candidate index of B, limb score), best first, parts used once."""
    offsets = np.cumsum([0] + [len(p) for p in peaks])
    connections = []
    for limb in LIMBS:
        cand_a, cand_b = peaks[limb[0]], peaks[limb[1]]
        scored = []
        for i, a in enumerate(cand_a):
            for j, b in enumerate(cand_b):
                score = score_limb(pafs, limb, a, b, height)
                if score is not None:
                    scored.append((score, i, j))
        scored.sort(key=lambda item: item[0], reverse=True)
        used_a, used_b, chosen = set(), set(), []
        for score, i, j in scored:
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            chosen.append((offsets[limb[0]] + i, offsets[limb[1]] + j, score))
            if len(chosen) >= min(len(cand_a), len(cand_b)):
                break
        connections.append(np.array(chosen, np.float64).reshape(-1, 3))
    return connections


def assemble_people(
    peaks: list[np.ndarray], connections: list[np.ndarray]
) -> tuple[list[Person], np.ndarray]:
    """Join the limbs into people; returns them and the candidates [n, 4] (x, y, score, part) they index."""
    candidates = np.concatenate(
        [np.column_stack([p, np.full(len(p), part)]) for part, p in enumerate(peaks)], axis=0
    ).reshape(-1, 4)
    people: list[Person] = []
    for k, (limb, found_limbs) in enumerate(zip(LIMBS, connections, strict=True)):
        part_a, part_b = limb[0], limb[1]
        for id_a, id_b, limb_score in found_limbs:
            id_a, id_b = int(id_a), int(id_b)
            holders = [p for p in people if p.parts[part_a] == id_a or p.parts[part_b] == id_b][:2]
            if len(holders) == 1 or (len(holders) == 2 and _overlap(*holders)):
                person = holders[0]
                if person.parts[part_b] != id_b:
                    person.parts[part_b] = id_b
                    person.count += 1
                    person.score += candidates[id_b, 2] + limb_score
            elif len(holders) == 2:  # two partial people that this limb joins: merge them
                first, second = holders
                first.parts = np.where(first.parts >= 0, first.parts, second.parts)
                first.count += second.count
                first.score += second.score + limb_score
                people.remove(second)
            elif k < TREE_LIMBS:
                person = Person(count=2, score=candidates[id_a, 2] + candidates[id_b, 2] + limb_score)
                person.parts[part_a], person.parts[part_b] = id_a, id_b
                people.append(person)
    kept = [p for p in people if p.count >= MIN_PARTS and p.score / p.count >= MIN_MEAN_SCORE]
    return kept, candidates


def _overlap(first: Person, second: Person) -> bool:
    return bool(np.any((first.parts >= 0) & (second.parts >= 0)))


def person_keypoints(person: Person, candidates: np.ndarray) -> np.ndarray:
    """float32 [18, 3] (x, y, score), zeros for missing parts."""
    keypoints = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    present = person.parts >= 0
    keypoints[present] = candidates[person.parts[present], :3]
    return keypoints


def box_area(keypoints: np.ndarray) -> float:
    found = keypoints[keypoints[:, 2] > 0, :2]
    if len(found) == 0:
        return 0.0
    extent = found.max(axis=0) - found.min(axis=0)
    return float(extent[0] * extent[1])


def people_from_maps(heatmaps: np.ndarray, pafs: np.ndarray) -> list[np.ndarray]:
    """Every person found in [H, W, 19] heatmaps and [H, W, 38] PAFs, as [18, 3] keypoints, largest first."""
    peaks = find_peaks(heatmaps)
    people, candidates = assemble_people(peaks, connect_limbs(peaks, pafs, heatmaps.shape[0]))
    keypoints = [person_keypoints(p, candidates) for p in people]
    order = sorted(range(len(people)), key=lambda i: (box_area(keypoints[i]), people[i].count), reverse=True)
    return [keypoints[i] for i in order]


class OpenPoseBackend:
    """OpenPose body. Build with `from_pretrained`; call `estimate(rgb_image)`."""

    def __init__(
        self,
        model: BodyPoseModel,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0),
        max_map_side: int = 1024,
    ):
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype).eval()
        self.scales = scales
        # Heatmaps and PAFs are computed at the photo's size up to this side; larger photos are processed at a
        # reduced size and the keypoints scaled back (57 float maps at 12 MP would take 2.7 GB).
        self.max_map_side = max_map_side

    @classmethod
    def from_pretrained(
        cls, folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, **kwargs
    ) -> OpenPoseBackend:
        folder = Path(folder)
        path = folder / CHECKPOINT
        if not path.is_file():
            raise WeightsMissing(f"{path} is missing")
        config = OpenPoseConfig()
        if (folder / CONFIG_FILE).is_file():
            config = OpenPoseConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text()))
        model = BodyPoseModel(config)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        # the file names layers without the torch port's block prefix: check in its names, then load in the model's
        names = module_key_from_checkpoint(model)
        check_keys(path, names, checkpoint, "the OpenPose body network")
        load_strict(model, {names[k]: v for k, v in checkpoint.items()}, path, "the OpenPose body network")
        return cls(model, device, dtype, **kwargs)

    def estimate(self, image: np.ndarray) -> PoseEstimate:
        height, width = require_rgb(image).shape[:2]
        factor = min(1.0, self.max_map_side / max(height, width))
        work = image
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            work = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        heatmaps, pafs = self.network_maps(work)
        people = people_from_maps(heatmaps, pafs)
        if not people:
            raise NoPersonFound("no person found")
        keypoints = people[0].copy()
        found = keypoints[:, 2] > 0
        keypoints[found, 0] *= width / work.shape[1]
        keypoints[found, 1] *= height / work.shape[0]
        return PoseEstimate(keypoints=keypoints, people_detected=len(people))

    @torch.inference_mode()
    def network_maps(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(heatmaps [H, W, 19], PAFs [H, W, 38]) float32 at the image's size, averaged over the scales."""
        height, width = image.shape[:2]
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        total = None
        for scale in self.scales:
            factor = scale * BOX_SIZE / height
            resized = cv2.resize(bgr, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
            h, w = resized.shape[:2]
            padded = np.pad(resized, ((0, -h % STRIDE), (0, -w % STRIDE), (0, 0)), constant_values=PAD_VALUE)
            x = torch.from_numpy(padded).permute(2, 0, 1)[None].to(self.device, torch.float32) / 256 - 0.5
            pafs, heatmaps = self.model(x.to(self.dtype))
            maps = torch.cat([heatmaps, pafs], 1).float()
            maps = F.interpolate(maps, scale_factor=STRIDE, mode="bicubic", align_corners=False)[:, :, :h, :w]
            maps = F.interpolate(maps, size=(height, width), mode="bicubic", align_corners=False)
            total = maps if total is None else total + maps
        mean = (total / len(self.scales))[0].permute(1, 2, 0).cpu().numpy()
        num_heatmaps = self.model.config.num_heatmaps
        return np.ascontiguousarray(mean[:, :, :num_heatmaps]), np.ascontiguousarray(
            mean[:, :, num_heatmaps:]
        )
