"""The platform's one vocabulary: categories, stages with their ports and services, COCO-18 keypoints and LIP labels.

Every place that names one of these imports it from here (the protos carry the same values as enums;
`vton.runtime.messages` maps between the two), so adding a category or moving a port is a one-line change.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Category(StrEnum):
    """What part of the body a garment dresses (the Dress Code split; VITON-HD is upper body only)."""

    UPPER_BODY = "upper_body"
    LOWER_BODY = "lower_body"
    DRESSES = "dresses"


CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)


class Stage(StrEnum):
    """The gRPC stage services, in the order a try-on calls them."""

    POSE = "pose"
    DENSEPOSE = "densepose"
    PARSING = "parsing"
    WARP = "warp"
    DIFFUSION = "diffusion"


STAGES: tuple[str, ...] = tuple(s.value for s in Stage)
# Each stage's default gRPC and Prometheus ports: `vton up`, the stage settings, compose and the Helm chart
# all use these (a test checks the chart's list against them).
GRPC_PORTS: dict[str, int] = {stage: 50051 + i for i, stage in enumerate(STAGES)}
METRICS_PORTS: dict[str, int] = {stage: 9101 + i for i, stage in enumerate(STAGES)}
# Each stage's gRPC service, the one `vton/v1/<stage>.proto` declares (a test checks): what its server registers,
# reports its health under and lists by reflection, and what the orchestrator's retries and health checks name.
SERVICE_NAMES: dict[str, str] = {
    Stage.POSE: "vton.v1.PoseService",
    Stage.DENSEPOSE: "vton.v1.DensePoseService",
    Stage.PARSING: "vton.v1.ParsingService",
    Stage.WARP: "vton.v1.WarpService",
    Stage.DIFFUSION: "vton.v1.DiffusionService",
}
API_PORT = 8080  # the orchestrator's HTTP API
# The steps a job records: the five stages plus the agnostic mask, which the parsing stage computes on its
# own call once pose and parsing are known.
JOB_STEPS: tuple[str, ...] = ("pose", "densepose", "parsing", "agnostic_mask", "warp", "diffusion")


class Keypoint(IntEnum):
    """OpenPose's COCO-18 body keypoints, in the order of `people[0].pose_keypoints_2d`."""

    NOSE = 0
    NECK = 1
    R_SHOULDER = 2
    R_ELBOW = 3
    R_WRIST = 4
    L_SHOULDER = 5
    L_ELBOW = 6
    L_WRIST = 7
    R_HIP = 8
    R_KNEE = 9
    R_ANKLE = 10
    L_HIP = 11
    L_KNEE = 12
    L_ANKLE = 13
    R_EYE = 14
    L_EYE = 15
    R_EAR = 16
    L_EAR = 17


NUM_KEYPOINTS = len(Keypoint)
# The limbs OpenPose draws, as keypoint pairs (its `limbSeq` minus the two ear-to-shoulder links).
LIMBS: tuple[tuple[Keypoint, Keypoint], ...] = (
    (Keypoint.NECK, Keypoint.R_SHOULDER),
    (Keypoint.NECK, Keypoint.L_SHOULDER),
    (Keypoint.R_SHOULDER, Keypoint.R_ELBOW),
    (Keypoint.R_ELBOW, Keypoint.R_WRIST),
    (Keypoint.L_SHOULDER, Keypoint.L_ELBOW),
    (Keypoint.L_ELBOW, Keypoint.L_WRIST),
    (Keypoint.NECK, Keypoint.R_HIP),
    (Keypoint.R_HIP, Keypoint.R_KNEE),
    (Keypoint.R_KNEE, Keypoint.R_ANKLE),
    (Keypoint.NECK, Keypoint.L_HIP),
    (Keypoint.L_HIP, Keypoint.L_KNEE),
    (Keypoint.L_KNEE, Keypoint.L_ANKLE),
    (Keypoint.NECK, Keypoint.NOSE),
    (Keypoint.NOSE, Keypoint.R_EYE),
    (Keypoint.R_EYE, Keypoint.R_EAR),
    (Keypoint.NOSE, Keypoint.L_EYE),
    (Keypoint.L_EYE, Keypoint.L_EAR),
)

# Each arm's and leg's keypoints from its root, the person's right first.
ARM_CHAINS: tuple[tuple[Keypoint, ...], ...] = (
    (Keypoint.R_SHOULDER, Keypoint.R_ELBOW, Keypoint.R_WRIST),
    (Keypoint.L_SHOULDER, Keypoint.L_ELBOW, Keypoint.L_WRIST),
)
LEG_CHAINS: tuple[tuple[Keypoint, ...], ...] = (
    (Keypoint.R_HIP, Keypoint.R_KNEE, Keypoint.R_ANKLE),
    (Keypoint.L_HIP, Keypoint.L_KNEE, Keypoint.L_ANKLE),
)


class Lip(IntEnum):
    """LIP's 20 human-parsing labels (SCHP's LIP model): what every parsing backend returns."""

    BACKGROUND = 0
    HAT = 1
    HAIR = 2
    GLOVE = 3
    SUNGLASSES = 4
    UPPER_CLOTHES = 5
    DRESS = 6
    COAT = 7
    SOCKS = 8
    PANTS = 9
    JUMPSUITS = 10
    SCARF = 11
    SKIRT = 12
    FACE = 13
    LEFT_ARM = 14
    RIGHT_ARM = 15
    LEFT_LEG = 16
    RIGHT_LEG = 17
    LEFT_SHOE = 18
    RIGHT_SHOE = 19


# LIP's own spelling of each label, as SCHP's label list writes it.
LIP_LABELS: tuple[str, ...] = tuple(label.name.lower().replace("_", "-") for label in Lip)
NUM_LIP_LABELS = len(Lip)


class LabelSet(StrEnum):
    """The human-parsing label sets a parsing backend may produce (SCHP's three datasets).

    The platform runs on LIP: the agnostic mask, warp and diffusion read LIP labels, so the parsing stage serves
    only a backend that makes them.
    """

    LIP = "lip"
    ATR = "atr"
    PASCAL = "pascal"


# DensePose's fine body parts: I is 0 for the background and 1..24 for the parts.
NUM_DENSEPOSE_PARTS = 24
