"""BlazePose (MediaPipe's pose networks) and the face mesh, run with LiteRT; pre/post-processing written here.

The networks are the ones MediaPipe ships (Apache-2.0): a single-shot person detector, a landmark network that
also predicts a person segmentation, and the 468-point face mesh. MediaPipe wraps them in calculator graphs; this
module does the same steps in numpy/OpenCV so nothing but the interpreter is needed:

1. detector (224x224, letterboxed, pixels in -1..1): 2254 SSD anchors; each anchor regresses a box and 4 alignment
   keypoints (0: mid-hip, 1: a point whose distance from the hips is the body's radius, 2: mid-shoulder, 3: the
   upper body's radius point). Boxes are decoded against the anchors, scores pass a sigmoid, weighted NMS merges
   duplicates.
2. region of interest: a square centred on the hips, side 2 x radius x 1.25, rotated so the hips->body-radius
   vector points up (MediaPipe's AlignmentPointsRects + RectTransformation).
3. landmark network (256x256 crop of that square, pixels in 0..1): 39 landmarks (33 body + 2 alignment aux + 4
   unused) with visibility/presence logits, a pose-presence score, a 256x256 segmentation logit map and 64x64
   heatmaps that refine each landmark. A second pass on the square the landmarks themselves define (MediaPipe's
   tracking ROI) sharpens the result on a still photo.
4. everything is mapped back to image pixels through the crop's affine transform.

Shop photos are often cut at the chin or the nose, which the face-led detector and the landmark network handle
badly; three steps MediaPipe does not have cover them: a person the detector misses is looked for on squares over
the whole photo and kept only as a body the frame cuts at the head (`_headless`); shoulders folded onto each other
are read again on the mirrored photo (`_unfolded`); and left and right are set by which way the photo shows the
person facing, not by the network's guess (`_facing`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Self

import cv2
import numpy as np

from vton.runtime.errors import NoPersonFound
from vton.runtime.images import require_rgb
from vton.runtime.litert import TfliteModel
from vton.runtime.vocab import NUM_KEYPOINTS, Keypoint

# --- detector configuration (MediaPipe pose_detection graph) ---------------------------------------------------
DETECTOR_SIZE = 224
ANCHOR_STRIDES = (8, 16, 32, 32, 32)  # layers of equal stride share one feature map
DETECTION_SCORE_THRESHOLD = 0.5  # MediaPipe's
CONFIDENT_DETECTION = 0.7  # below this a detection needs a face to count (see observe)
NMS_IOU_THRESHOLD = 0.3
ROI_SCALE = 1.25  # margin the landmark network was trained with

# --- landmark network ------------------------------------------------------------------------------------------
LANDMARK_SIZE = 256
NUM_LANDMARKS = 33  # the body landmarks; rows 33 and 34 are the alignment (centre, radius) aux points
POSE_PRESENCE_THRESHOLD = 0.5
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5

# --- face mesh -------------------------------------------------------------------------------------------------
FACE_SIZE = 192
FACE_PRESENCE_THRESHOLD = 0.5
FACE_ROI_SCALE = 1.5
FACE_EYE_CORNERS = (33, 263)  # right eye outer corner, left eye outer corner in the 468-point mesh

# --- facing and head-cut photos ----------------------------------------------------------------------------------
# A photo cut at the chin or the nose has no face for the detector to find: the landmark network is then run on a
# square over the whole photo and its result kept only when it is a body cut by the frame's top edge (see
# _headless), so that a garment laid flat never passes for a person.
# The squares tried, best first: (side against the photo's longer side, centre's height as a share of the
# photo's). The larger ones reach below the frame for a photo cut at the thighs too.
HEADLESS_ROIS = ((1.0, 0.5), (1.3, 0.5), (1.8, 0.5), (1.8, 0.75))
HEADLESS_MIN_VISIBILITY = 0.75  # mean visibility of the shoulders, arms and hips
HEADLESS_HEAD_ABOVE = (
    0.1  # the ears lie above this share of the height (the head is at or above the top edge)
)
HEADLESS_NECK_WIDTH = 0.3  # the person crosses the top edge in a run at least this many shoulder widths wide
HEADLESS_MAX_WIDTH = 2.0  # ... and is at most this many wide there and at the shoulders (arms included)
# Shoulders closer than this share of the torso's length have folded onto each other: a frontal body has 0.5-0.9
# (a person in profile less, but a shop photo shows the front).
FOLDED_SHOULDERS = 0.3
# A left-right pair closer than this share of the torso's length is seen edge-on: it shows no side.
EDGE_ON = 0.15
# The feet of someone seen from behind point away from the camera: their toes lie above their heels.
FEET_AWAY = -0.2  # (toe - heel) y over the foot's length, for every visible foot
FOOT_MIN_VISIBILITY = 0.5


class Landmark(IntEnum):
    """MediaPipe BlazePose's 33 body landmarks ("L" is the person's left), in the network's output order."""

    NOSE = 0
    L_EYE_INNER = 1
    L_EYE = 2
    L_EYE_OUTER = 3
    R_EYE_INNER = 4
    R_EYE = 5
    R_EYE_OUTER = 6
    L_EAR = 7
    R_EAR = 8
    L_MOUTH = 9
    R_MOUTH = 10
    L_SHOULDER = 11
    R_SHOULDER = 12
    L_ELBOW = 13
    R_ELBOW = 14
    L_WRIST = 15
    R_WRIST = 16
    L_PINKY = 17
    R_PINKY = 18
    L_INDEX = 19
    R_INDEX = 20
    L_THUMB = 21
    R_THUMB = 22
    L_HIP = 23
    R_HIP = 24
    L_KNEE = 25
    R_KNEE = 26
    L_ANKLE = 27
    R_ANKLE = 28
    L_HEEL = 29
    R_HEEL = 30
    L_TOE = 31
    R_TOE = 32


# The alignment points the landmark network adds after the body (MediaPipe's tracking ROI): hips' centre and a
# point on the body's enclosing circle.
AUX_CENTRE, AUX_RADIUS = NUM_LANDMARKS, NUM_LANDMARKS + 1


def _mirror_index() -> np.ndarray:
    """Each landmark's mirror image: the same point of the person's other side (the nose is its own)."""
    index = np.arange(len(Landmark))
    for mark in Landmark:
        if mark.name.startswith("L_"):
            other = Landmark["R_" + mark.name[2:]]
            index[mark], index[other] = other, mark
    return index


MIRRORED = _mirror_index()

# --- MediaPipe 33 -> OpenPose COCO-18 ----------------------------------------------------------------------------
KEYPOINT_MIN_CONFIDENCE = 0.3
# The COCO-18 keypoints BlazePose has a landmark for (the neck is the shoulders' midpoint).
COCO18_FROM_BLAZEPOSE = {
    Keypoint.NOSE: Landmark.NOSE,
    Keypoint.R_SHOULDER: Landmark.R_SHOULDER,
    Keypoint.R_ELBOW: Landmark.R_ELBOW,
    Keypoint.R_WRIST: Landmark.R_WRIST,
    Keypoint.L_SHOULDER: Landmark.L_SHOULDER,
    Keypoint.L_ELBOW: Landmark.L_ELBOW,
    Keypoint.L_WRIST: Landmark.L_WRIST,
    Keypoint.R_HIP: Landmark.R_HIP,
    Keypoint.R_KNEE: Landmark.R_KNEE,
    Keypoint.R_ANKLE: Landmark.R_ANKLE,
    Keypoint.L_HIP: Landmark.L_HIP,
    Keypoint.L_KNEE: Landmark.L_KNEE,
    Keypoint.L_ANKLE: Landmark.L_ANKLE,
    Keypoint.R_EYE: Landmark.R_EYE,
    Keypoint.L_EYE: Landmark.L_EYE,
    Keypoint.R_EAR: Landmark.R_EAR,
    Keypoint.L_EAR: Landmark.L_EAR,
}


@dataclass
class BodyObservation:
    keypoints: (
        np.ndarray
    )  # float32 [18,3] OpenPose COCO-18 (x, y px, confidence), zeros where missing/not visible
    landmarks: np.ndarray  # float32 [33,4] BlazePose landmarks: x, y px, z (px scale), visibility (0..1)
    mask: np.ndarray  # float32 [H,W] person segmentation probability 0..1 at the image's size
    box: tuple[float, float, float, float]  # person box x0, y0, x1, y1 in px
    people_detected: int
    face: (
        np.ndarray | None
    )  # float32 [468,3] face mesh points (x, y px, z) or None when not asked / not found


@dataclass(frozen=True)
class RotatedSquare:
    """A square region of the image: centre (px), side (px), rotation (radians, clockwise on screen)."""

    cx: float
    cy: float
    size: float
    rotation: float

    def crop_to_image(self, crop_size: int) -> np.ndarray:
        """The 2x3 affine matrix taking pixel coordinates of a crop_size x crop_size crop to image pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        k = self.size / crop_size
        # p_image = centre + R @ ((p_crop - crop_size / 2) * k)
        tx = self.cx - k * (c - s) * crop_size / 2
        ty = self.cy - k * (s + c) * crop_size / 2
        return np.array([[c * k, -s * k, tx], [s * k, c * k, ty]], dtype=np.float64)


@dataclass
class _Detection:
    score: float
    box: np.ndarray  # x0, y0, x1, y1 px (the detector's box is the head)
    keypoints: np.ndarray  # [4, 2] px: mid-hip, body radius point, mid-shoulder, upper-body radius point


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def ssd_anchor_centres(
    input_size: int = DETECTOR_SIZE, strides: tuple[int, ...] = ANCHOR_STRIDES
) -> np.ndarray:
    """[N, 2] anchor centres (x, y) in 0..1, in the order the detector emits its rows.

    MediaPipe's SsdAnchorsCalculator with fixed_anchor_size: every anchor is 1x1, so only centres matter. Layers
    with the same stride share a feature map; each layer puts two anchors per cell (aspect ratio 1 and the
    interpolated scale), so a 28x28 map has 2 per cell, 14x14 has 2 and the three 7x7 layers have 6 together.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        last = layer
        while last < len(strides) and strides[last] == stride:
            last += 1
        per_cell = 2 * (last - layer)
        side = math.ceil(input_size / stride)
        ys, xs = np.meshgrid((np.arange(side) + 0.5) / side, (np.arange(side) + 0.5) / side, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, iou_threshold: float):
    """MediaPipe's weighted NMS: each kept detection is the score-weighted mean of the ones it suppresses."""
    order = np.argsort(-scores)
    scores, boxes, keypoints = scores[order], boxes[order], keypoints[order]
    alive = np.ones(len(scores), dtype=bool)
    kept = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        overlap = _iou(boxes[i], boxes) > iou_threshold
        group = overlap & alive
        group[i] = True
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kps = (keypoints[group] * w[:, :, None]).sum(0) / w.sum()
        kept.append((float(scores[i]), box, kps))
        alive &= ~group
    return kept


def _square_from_alignment(centre: np.ndarray, radius_point: np.ndarray, scale: float) -> RotatedSquare:
    """MediaPipe's AlignmentPointsRects (target angle 90 degrees) followed by RectTransformation(scale)."""
    dx, dy = float(radius_point[0] - centre[0]), float(radius_point[1] - centre[1])
    rotation = math.pi / 2 - math.atan2(-dy, dx)
    rotation = rotation - 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
    size = 2.0 * math.hypot(dx, dy) * scale
    return RotatedSquare(float(centre[0]), float(centre[1]), size, rotation)


def _apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


class BlazePose:
    """Person detection, 33 body landmarks, person segmentation and (optionally) the face mesh for one photo."""

    def __init__(self, detector: TfliteModel, landmarker: TfliteModel, face_mesh: TfliteModel | None):
        self.detector = detector
        self.landmarker = landmarker
        self.face_mesh = face_mesh
        self._anchors = ssd_anchor_centres()

    @classmethod
    def from_pretrained(cls, folder: Path, landmark_model: str = "full") -> BlazePose:
        if landmark_model not in ("full", "heavy"):
            raise ValueError(f"landmark_model must be 'full' or 'heavy', not {landmark_model!r}")
        folder = Path(folder)
        face_path = folder / "face_landmark.tflite"
        return cls(
            TfliteModel(folder / "pose_detection.tflite"),
            TfliteModel(folder / f"pose_landmark_{landmark_model}.tflite"),
            TfliteModel(face_path) if face_path.is_file() else None,
        )

    # --- public ------------------------------------------------------------------------------------------------
    def observe(self, image: np.ndarray, with_face: bool = False) -> BodyObservation:
        """Landmarks, COCO-18 keypoints, segmentation and box of the largest person; NoPersonFound if none.

        The landmarks are those of a person facing the camera unless the photo shows otherwise (see `_facing`).
        """
        image = _check_image(image)
        height, width = image.shape[:2]
        people = self._detected_people(image) or self._headless(image)
        if not people:
            raise NoPersonFound("no person found")
        # The largest person: the aux landmarks' radius is the person's size in the photo.
        largest = max(people, key=lambda found: _body_radius(found[0]))
        landmarks39, mask = self._unfolded(image, self._tracked(image, largest))
        landmarks = self._facing(image, landmarks39[:NUM_LANDMARKS].astype(np.float32))
        keypoints = coco18_from_landmarks(landmarks, width, height)
        box = _person_box(mask, landmarks, width, height)
        face = self._face(image, landmarks) if with_face and self.face_mesh is not None else None
        return BodyObservation(keypoints, landmarks, mask, box, len(people), face)

    # --- finding people ----------------------------------------------------------------------------------------
    def _detected_people(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(landmarks [39, 4], mask) of every person the detector finds."""
        people = []
        for detection in self._detect(image):
            roi = _square_from_alignment(detection.keypoints[0], detection.keypoints[1], ROI_SCALE)
            found = self._landmarks(image, roi)
            if found is None:
                continue
            # A garment laid flat can look like a headless body to the detector (scores 0.5-0.65 on product
            # photos); a weaker detection counts only when a real face sits where the pose puts the head.
            if detection.score < CONFIDENT_DETECTION and (
                self.face_mesh is None or self._face(image, found[0]) is None
            ):
                continue
            people.append(found)
        return people

    def _headless(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The person of a photo cut at the chin or the nose, which the detector (a face-led one) misses.

        The landmark network runs on a square over the photo, then on the square its own landmarks define;
        the result counts only as a body cut by the frame's top edge: sure shoulders, arms and hips, the head at
        or above the edge and the person crossing the edge above the shoulders. A garment laid flat on its
        background never touches the edge under a head.
        """
        height, width = image.shape[:2]
        for scale, centre in HEADLESS_ROIS:
            roi = RotatedSquare(width / 2, centre * height, scale * max(height, width), 0.0)
            found = self._landmarks(image, roi)
            if found is None:
                continue
            found = self._tracked(image, found)
            if _cut_at_the_head(*found, height):
                return [found]
        return []

    def _tracked(
        self, image: np.ndarray, found: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A second pass on MediaPipe's tracking ROI (the square the aux landmarks define, tighter than the
        detector's); the first pass's result where the second finds no pose."""
        aux = found[0]
        square = _square_from_alignment(aux[AUX_CENTRE, :2], aux[AUX_RADIUS, :2], ROI_SCALE)
        refined = self._landmarks(image, square)
        return refined if refined is not None else found

    def _unfolded(
        self, image: np.ndarray, found: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A pose whose shoulders fold onto each other (the network unsure whether it sees a front or a back,
        mostly without a face) read again on the mirrored photo, whose reading is kept when its shoulders are
        wider apart."""
        landmarks = found[0]
        if _shoulder_share(landmarks) >= FOLDED_SHOULDERS:
            return found
        width = image.shape[1]
        square = _square_from_alignment(landmarks[AUX_CENTRE, :2], landmarks[AUX_RADIUS, :2], ROI_SCALE)
        mirrored_square = RotatedSquare(width - square.cx, square.cy, square.size, -square.rotation)
        other = self._landmarks(np.ascontiguousarray(image[:, ::-1]), mirrored_square)
        if other is None:
            return found
        other_landmarks, other_mask = other
        # Back to the photo: x mirrored, and each body landmark is its mirror image's (aux points stay).
        unmirrored = other_landmarks.copy()
        unmirrored[:, 0] = width - other_landmarks[:, 0]
        unmirrored[:NUM_LANDMARKS] = unmirrored[MIRRORED]
        if _shoulder_share(unmirrored) <= _shoulder_share(landmarks):
            return found
        return unmirrored, np.ascontiguousarray(other_mask[:, ::-1])

    # --- facing ------------------------------------------------------------------------------------------------
    def _facing(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The landmarks with the person's left and right where the photo shows them.

        Without a face (a photo cut at the chin or the nose) the network guesses which way the person faces,
        and guesses wrong on some photos of people facing the camera: the left and right of the arms, the legs
        or all of them come back swapped, as if seen from behind. A shop photo shows the front, so a reading
        from behind is kept only when the photo agrees: the head is in the frame but no face is found there,
        or the feet point away from the camera. Then the head, the arms and the legs are each made to agree
        with that facing.
        """
        height, width = image.shape[:2]
        if _head_in_frame(landmarks, width, height):
            # The network's arms say, unless it reads a back where a face shows.
            front = faces_camera(landmarks, Landmark.L_SHOULDER, Landmark.R_SHOULDER) or (
                self.face_mesh is not None and self._face(image, _facing_front(landmarks)) is not None
            )
        else:
            front = not feet_point_away(landmarks, height)
        oriented = _facing_front(landmarks)
        return oriented if front else oriented[MIRRORED]

    # --- detector ----------------------------------------------------------------------------------------------
    def _detect(self, image: np.ndarray) -> list[_Detection]:
        height, width = image.shape[:2]
        # Letterbox: the image scaled to fit, centred, zero borders (MediaPipe's keep_aspect_ratio + BORDER_ZERO).
        # Area resampling instead of a plain warp: the photo shrinks ~5x and must not alias.
        scale = DETECTOR_SIZE / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        off_x, off_y = (DETECTOR_SIZE - new_w) // 2, (DETECTOR_SIZE - new_h) // 2
        small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        crop = cv2.copyMakeBorder(
            small,
            off_y,
            DETECTOR_SIZE - new_h - off_y,
            off_x,
            DETECTOR_SIZE - new_w - off_x,
            cv2.BORDER_CONSTANT,
            value=0,
        )
        to_image = np.array([width / new_w, height / new_h])
        out = self.detector(crop.astype(np.float32) / 127.5 - 1.0)
        raw_boxes, raw_scores = out["Identity"], out["Identity_1"][:, 0]
        scores = sigmoid(np.clip(raw_scores, -100.0, 100.0))
        keep = scores >= DETECTION_SCORE_THRESHOLD
        if not keep.any():
            return []
        raw, anchors, scores = raw_boxes[keep], self._anchors[keep], scores[keep]
        # Offsets are in detector pixels relative to the anchor centre (anchors are 1x1, so no size factor).
        centre = raw[:, 0:2] / DETECTOR_SIZE + anchors
        half = raw[:, 2:4] / DETECTOR_SIZE / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        kps = raw[:, 4:12].reshape(-1, 4, 2) / DETECTOR_SIZE + anchors[:, None, :]
        detections = []
        for score, box, kp in weighted_nms(scores, boxes, kps, NMS_IOU_THRESHOLD):
            # letterboxed 0..1 -> image pixels
            box_px = (box.reshape(2, 2) * DETECTOR_SIZE - (off_x, off_y)) * to_image
            kp_px = (kp * DETECTOR_SIZE - (off_x, off_y)) * to_image
            detections.append(_Detection(score, box_px.ravel(), kp_px))
        return detections

    # --- landmarks ---------------------------------------------------------------------------------------------
    def _landmarks(self, image: np.ndarray, roi: RotatedSquare) -> tuple[np.ndarray, np.ndarray] | None:
        """[39, 4] landmarks in image px (x, y, z, visibility) and the [H, W] mask; None if no pose there."""
        height, width = image.shape[:2]
        crop_to_image = roi.crop_to_image(LANDMARK_SIZE)
        crop = _crop(image, crop_to_image, LANDMARK_SIZE, roi.size)
        out = self.landmarker(crop.astype(np.float32) / 255.0)
        if float(out["Identity_1"][0]) < POSE_PRESENCE_THRESHOLD:
            return None
        raw = out["Identity"].reshape(-1, 5)
        xy = _refine_with_heatmap(raw[:, :2] / LANDMARK_SIZE, sigmoid(out["Identity_3"])) * LANDMARK_SIZE
        landmarks = np.empty((raw.shape[0], 4), dtype=np.float32)
        landmarks[:, :2] = _apply_affine(crop_to_image, xy)
        landmarks[:, 2] = raw[:, 2] * roi.size / LANDMARK_SIZE
        landmarks[:, 3] = sigmoid(raw[:, 3])
        probability = sigmoid(out["Identity_2"][:, :, 0]).astype(np.float32)
        mask = cv2.warpAffine(
            probability,
            pixel_index_affine(crop_to_image),
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        return landmarks, np.clip(mask, 0.0, 1.0)

    # --- face mesh ---------------------------------------------------------------------------------------------
    def _face(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        """468 face mesh points in image px, from a crop the pose's face landmarks place; None if no face."""
        face_points = landmarks[: Landmark.R_MOUTH + 1]
        if float(np.median(face_points[:, 3])) < KEYPOINT_MIN_CONFIDENCE:
            return None
        eye_r, eye_l = landmarks[Landmark.R_EYE, :2], landmarks[Landmark.L_EYE, :2]
        eyes = (eye_r + eye_l) / 2
        mouth = (landmarks[Landmark.L_MOUTH, :2] + landmarks[Landmark.R_MOUTH, :2]) / 2
        # The face box is about 2.7 eye-to-mouth distances tall and as wide as the ears are apart (frontal).
        size = max(
            float(np.linalg.norm(landmarks[Landmark.L_EAR, :2] - landmarks[Landmark.R_EAR, :2])),
            2.7 * float(np.linalg.norm(mouth - eyes)),
        )
        centre = eyes + 0.4 * (mouth - eyes)
        rotation = -math.atan2(-(eye_l[1] - eye_r[1]), eye_l[0] - eye_r[0])
        roi = RotatedSquare(float(centre[0]), float(centre[1]), size * FACE_ROI_SCALE, rotation)
        mesh = self._face_mesh_in(image, roi)
        if mesh is None:
            return None
        # Second pass on the mesh's own box (MediaPipe's face tracking ROI): centred and scaled on the face.
        refined = self._face_mesh_in(image, _face_roi_from_mesh(mesh))
        return refined if refined is not None else mesh

    def _face_mesh_in(self, image: np.ndarray, roi: RotatedSquare) -> np.ndarray | None:
        assert self.face_mesh is not None
        crop_to_image = roi.crop_to_image(FACE_SIZE)
        crop = _crop(image, crop_to_image, FACE_SIZE, roi.size)
        out = self.face_mesh(crop.astype(np.float32) / 255.0)
        presence = float(sigmoid(out["conv2d_31"].ravel()[0]))
        if presence < FACE_PRESENCE_THRESHOLD:
            return None
        raw = out["conv2d_21"].reshape(468, 3)
        mesh = np.empty((468, 3), dtype=np.float32)
        mesh[:, :2] = _apply_affine(crop_to_image, raw[:, :2])
        mesh[:, 2] = raw[:, 2] * roi.size / FACE_SIZE
        return mesh


class OnBlazePose:
    """What the embedded pose, DensePose and parsing backends are built on: one BlazePose, loaded from the
    `blazepose-litert` folder; each backend turns its observations into its own answer."""

    def __init__(self, pose: BlazePose) -> None:
        self.pose = pose

    @classmethod
    def from_pretrained(cls, folder: Path, landmark_model: str = "full") -> Self:
        return cls(BlazePose.from_pretrained(Path(folder), landmark_model=landmark_model))


def _crop(image: np.ndarray, crop_to_image: np.ndarray, crop_size: int, roi_size: float) -> np.ndarray:
    """The rotated square as a crop_size x crop_size crop, edges replicated (MediaPipe's default border).

    A bilinear warp that shrinks a lot aliases; when the square is more than twice the crop, the photo is first
    shrunk with area resampling so the warp works near 1:1.
    """
    shrink = crop_size * 1.5 / roi_size
    if shrink < 0.5:
        height, width = image.shape[:2]
        new_w, new_h = max(1, round(width * shrink)), max(1, round(height * shrink))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        crop_to_image = crop_to_image * np.array([[new_w / width], [new_h / height]])
    return cv2.warpAffine(
        image,
        pixel_index_affine(crop_to_image),
        (crop_size, crop_size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def pixel_index_affine(matrix: np.ndarray) -> np.ndarray:
    """An affine map of continuous coordinates (pixel i spans [i, i+1)) as OpenCV's warps want it (pixel centres)."""
    out = matrix.astype(np.float64).copy()
    out[:, 2] += out[:, :2].sum(1) * 0.5 - 0.5
    return out


def _face_roi_from_mesh(mesh: np.ndarray) -> RotatedSquare:
    right, left = mesh[FACE_EYE_CORNERS[0], :2], mesh[FACE_EYE_CORNERS[1], :2]
    rotation = -math.atan2(-(left[1] - right[1]), left[0] - right[0])
    c, s = math.cos(rotation), math.sin(rotation)
    # Box of the mesh in the face's own (unrotated) frame, its centre taken back to the image.
    to_face = np.array([[c, s], [-s, c]])
    local = mesh[:, :2] @ to_face.T
    lo, hi = local.min(0), local.max(0)
    centre = ((lo + hi) / 2) @ to_face
    size = float(max(hi - lo)) * FACE_ROI_SCALE
    return RotatedSquare(float(centre[0]), float(centre[1]), size, rotation)


def _refine_with_heatmap(xy: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmap: a confident heatmap moves each point to its local weighted mean.

    xy: [N, 2] in 0..1 of the crop; heatmap: [h, w, N] confidences. Returns the refined [N, 2] in 0..1.
    """
    hm_h, hm_w, channels = heatmap.shape
    out = xy.copy()
    half = (HEATMAP_KERNEL - 1) // 2
    for i in range(min(channels, len(xy))):
        col, row = int(xy[i, 0] * hm_w), int(xy[i, 1] * hm_h)
        if not (0 <= col < hm_w and 0 <= row < hm_h):
            continue
        r0, r1 = max(0, row - half), min(hm_h, row + half + 1)
        c0, c1 = max(0, col - half), min(hm_w, col + half + 1)
        window = heatmap[r0:r1, c0:c1, i]
        total = float(window.sum())
        if window.max() >= HEATMAP_MIN_CONFIDENCE and total > 0:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            out[i, 0] = float((cols * window).sum()) / total / hm_w
            out[i, 1] = float((rows * window).sum()) / total / hm_h
    return out


def coco18_from_landmarks(
    landmarks: np.ndarray, width: int, height: int, min_confidence: float = KEYPOINT_MIN_CONFIDENCE
) -> np.ndarray:
    """[33, 4] BlazePose landmarks (px) -> [18, 3] OpenPose COCO-18, zeros for unsure or off-image points."""
    keypoints = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    for coco, blaze in COCO18_FROM_BLAZEPOSE.items():
        keypoints[coco] = landmarks[blaze, [0, 1, 3]]
    left, right = landmarks[Landmark.L_SHOULDER], landmarks[Landmark.R_SHOULDER]
    keypoints[Keypoint.NECK] = ((left[0] + right[0]) / 2, (left[1] + right[1]) / 2, min(left[3], right[3]))
    inside = (
        (keypoints[:, 0] >= 0)
        & (keypoints[:, 0] <= width - 1)
        & (keypoints[:, 1] >= 0)
        & (keypoints[:, 1] <= height - 1)
    )
    keypoints[~(inside & (keypoints[:, 2] >= min_confidence))] = 0.0
    return keypoints


# The parts of the body whose left and right the network may swap as one, each with the pair that tells its
# side: the face by its eyes, the arms by the shoulders, the legs by the hips.
_PARTS = (
    (range(Landmark.L_EYE_INNER, Landmark.R_MOUTH + 1), Landmark.L_EYE, Landmark.R_EYE),
    (range(Landmark.L_SHOULDER, Landmark.R_THUMB + 1), Landmark.L_SHOULDER, Landmark.R_SHOULDER),
    (range(Landmark.L_HIP, Landmark.R_TOE + 1), Landmark.L_HIP, Landmark.R_HIP),
)


def faces_camera(landmarks: np.ndarray, left: int, right: int) -> bool:
    """Whether a left-right pair of landmarks is that of a person facing the camera: their right on the image's
    left of the axis from the hips up to the shoulders (the midpoints, which do not depend on the naming)."""
    lm = landmarks[:, :2].astype(np.float64)
    up = (lm[Landmark.L_SHOULDER] + lm[Landmark.R_SHOULDER]) - (lm[Landmark.L_HIP] + lm[Landmark.R_HIP])
    right_to_left = lm[left] - lm[right]
    # On screen (y down) a person facing us has right_to_left pointing right of "up": a positive cross product.
    return bool(up[0] * right_to_left[1] - up[1] * right_to_left[0] > 0)


def _facing_front(landmarks: np.ndarray) -> np.ndarray:
    """The landmarks with each part's left and right swapped where that part reads as seen from behind. A part
    seen edge-on (a person in profile) has no clear side and stays as the network named it."""
    out = landmarks.copy()
    lm = landmarks[:, :2].astype(np.float64)
    torso = 0.5 * float(
        np.linalg.norm(
            lm[Landmark.L_SHOULDER] + lm[Landmark.R_SHOULDER] - lm[Landmark.L_HIP] - lm[Landmark.R_HIP]
        )
    )
    for part, left, right in _PARTS:
        edge_on = float(np.linalg.norm(lm[left] - lm[right])) < EDGE_ON * torso
        if not edge_on and not faces_camera(landmarks, left, right):
            index = np.array(part)
            out[index] = landmarks[MIRRORED[index]]
    return out


def feet_point_away(landmarks: np.ndarray, height: int) -> bool:
    """Whether every foot seen points away from the camera (the toes above the heels): a person seen from
    behind. False when no foot is seen."""
    seen = []
    for heel, toe in ((Landmark.L_HEEL, Landmark.L_TOE), (Landmark.R_HEEL, Landmark.R_TOE)):
        a, b = landmarks[heel], landmarks[toe]
        length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
        if min(a[3], b[3]) < FOOT_MIN_VISIBILITY or max(a[1], b[1]) >= height or length < 1.0:
            continue
        seen.append((b[1] - a[1]) / length)
    return bool(seen) and max(seen) < FEET_AWAY


def _head_in_frame(landmarks: np.ndarray, width: int, height: int) -> bool:
    """Whether the nose, the eyes and the mouth lie inside the photo (a face could be seen)."""
    points = landmarks[
        [Landmark.NOSE, Landmark.L_EYE, Landmark.R_EYE, Landmark.L_MOUTH, Landmark.R_MOUTH], :2
    ]
    return bool(((points >= 0) & (points < (width, height))).all())


def _cut_at_the_head(landmarks: np.ndarray, mask: np.ndarray, height: int) -> bool:
    """Whether a landmark result found without the detector is a body the frame's top edge cuts at the head:
    sure shoulders, arms and hips, the ears at or above the edge, the person crossing the edge above the
    shoulders as wide as a neck or a chest, and no wider at the shoulders than shoulders and arms are (a
    pose squeezed into part of the person is not the person)."""
    body = landmarks[Landmark.L_SHOULDER : Landmark.R_HIP + 1, 3]
    if float(body.mean()) < HEADLESS_MIN_VISIBILITY:
        return False
    ears_y = float(landmarks[[Landmark.L_EAR, Landmark.R_EAR], 1].mean())
    if ears_y > HEADLESS_HEAD_ABOVE * height:
        return False
    shoulders = landmarks[[Landmark.L_SHOULDER, Landmark.R_SHOULDER], :2]
    width = max(float(np.linalg.norm(shoulders[0] - shoulders[1])), 1.0)
    centre_x, shoulder_y = shoulders.mean(axis=0)
    row = int(np.clip(shoulder_y, 0, height - 1))
    neck = _run_width(mask[0] > 0.5, centre_x) / width
    chest = _run_width(mask[row] > 0.5, centre_x) / width
    return HEADLESS_NECK_WIDTH <= neck <= HEADLESS_MAX_WIDTH and chest <= HEADLESS_MAX_WIDTH


def _run_width(row: np.ndarray, x: float) -> int:
    """Length of the run of True pixels of `row` through column x (0 when x is not on one)."""
    column = int(np.clip(round(x), 0, len(row) - 1))
    if not row[column]:
        return 0
    gaps_left = np.flatnonzero(~row[:column])
    gaps_right = np.flatnonzero(~row[column:])
    left = int(gaps_left[-1]) + 1 if len(gaps_left) else 0
    right = column + int(gaps_right[0]) if len(gaps_right) else len(row)
    return right - left


def _shoulder_share(landmarks: np.ndarray) -> float:
    """The shoulders' distance against the torso's length (hips' to shoulders' midpoint)."""
    lm = landmarks[:, :2].astype(np.float64)
    shoulders = float(np.linalg.norm(lm[Landmark.L_SHOULDER] - lm[Landmark.R_SHOULDER]))
    torso = 0.5 * float(
        np.linalg.norm(
            lm[Landmark.L_SHOULDER] + lm[Landmark.R_SHOULDER] - lm[Landmark.L_HIP] - lm[Landmark.R_HIP]
        )
    )
    return shoulders / max(torso, 1.0)


def _body_radius(landmarks: np.ndarray) -> float:
    """The person's size in the photo: the radius of the body's circle the aux landmarks give."""
    return float(np.linalg.norm(landmarks[AUX_RADIUS, :2] - landmarks[AUX_CENTRE, :2]))


def _person_box(
    mask: np.ndarray, landmarks: np.ndarray, width: int, height: int
) -> tuple[float, float, float, float]:
    """The box of the segmentation (probability > 0.5); the visible landmarks' box when the mask is empty."""
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs):
        return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    seen = landmarks[landmarks[:, 3] >= KEYPOINT_MIN_CONFIDENCE, :2]
    if not len(seen):
        seen = landmarks[:, :2]
    x0, y0 = np.clip(seen.min(0), 0, (width, height))
    x1, y1 = np.clip(seen.max(0), 0, (width, height))
    return float(x0), float(y0), float(x1), float(y1)


def _check_image(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(require_rgb(image))
