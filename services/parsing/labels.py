"""Label maps of the datasets turned into LIP, and the colours SCHP draws label maps with.

LIP (vton.runtime.vocab.Lip) is what every backend of this stage returns. VITON-HD's parse maps use LIP's indices
except 10, which VITON-HD spends on the neck (LIP's "jumpsuits" is unused there). Dress Code's label maps use an
ATR-like set of 18 classes (the `label_map` of Dress Code's and LaDI-VTON's dataset code). The mappings below turn
those into LIP so tests, tools and training can compare a backend's output with a dataset's reference.
"""

from __future__ import annotations

import numpy as np

from vton.runtime.vocab import LIP_LABELS, NUM_LIP_LABELS, Lip

# Transitional names for the embedded parser, the agnostic mask and their tests, which read LIP's ids from this
# module; they come from the vocabulary, and go once those files use vton.runtime.vocab.Lip themselves.
(BACKGROUND, HAT, HAIR, GLOVE, SUNGLASSES, UPPER_CLOTHES, DRESS, COAT, SOCKS, PANTS, JUMPSUITS, SCARF, SKIRT,
 FACE, LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG, LEFT_SHOE, RIGHT_SHOE) = Lip  # fmt: skip
LIP = {name: index for index, name in enumerate(LIP_LABELS)}

# Dress Code's label maps (`<id>_4.png`), index order of its dataset code's `label_map`.
DRESSCODE_LABELS: tuple[str, ...] = (
    "background",
    "hat",
    "hair",
    "sunglasses",
    "upper_clothes",
    "skirt",
    "pants",
    "dress",
    "belt",
    "left_shoe",
    "right_shoe",
    "head",
    "left_leg",
    "right_leg",
    "left_arm",
    "right_arm",
    "bag",
    "scarf",
)

# Dress Code -> LIP. "head" is face plus neck, as LIP's face is; LIP has no belt (it sits on the waist of the
# lower garment) and no bag (LIP annotators left bags as background).
_DRESSCODE_TO_LIP: dict[str, Lip] = {
    "background": Lip.BACKGROUND,
    "hat": Lip.HAT,
    "hair": Lip.HAIR,
    "sunglasses": Lip.SUNGLASSES,
    "upper_clothes": Lip.UPPER_CLOTHES,
    "skirt": Lip.SKIRT,
    "pants": Lip.PANTS,
    "dress": Lip.DRESS,
    "belt": Lip.PANTS,
    "left_shoe": Lip.LEFT_SHOE,
    "right_shoe": Lip.RIGHT_SHOE,
    "head": Lip.FACE,
    "left_leg": Lip.LEFT_LEG,
    "right_leg": Lip.RIGHT_LEG,
    "left_arm": Lip.LEFT_ARM,
    "right_arm": Lip.RIGHT_ARM,
    "bag": Lip.BACKGROUND,
    "scarf": Lip.SCARF,
}
VITONHD_NECK = 10


def _lookup(table: dict[int, int]) -> np.ndarray:
    lut = np.zeros(256, np.uint8)
    for source, target in table.items():
        lut[source] = target
    return lut


_DRESSCODE_LUT = _lookup({i: _DRESSCODE_TO_LIP[name] for i, name in enumerate(DRESSCODE_LABELS)})
# VITON-HD: identity on LIP indices, the neck joins the face (LIP labels the neck as face).
_VITONHD_LUT = _lookup({i: (Lip.FACE if i == VITONHD_NECK else i) for i in range(NUM_LIP_LABELS)})


def dresscode_to_lip(labels: np.ndarray) -> np.ndarray:
    """A Dress Code label map -> LIP indices (unknown indices become background)."""
    return _DRESSCODE_LUT[labels.astype(np.uint8)]


def vitonhd_to_lip(labels: np.ndarray) -> np.ndarray:
    """A VITON-HD parse map (image-parse, image-parse-v3) -> LIP indices; the neck (10) becomes face."""
    return _VITONHD_LUT[labels.astype(np.uint8)]


def get_palette(num_classes: int) -> list[int]:
    """The colour table SCHP draws its label maps with (the PASCAL VOC bit-pattern map), flat RGB.

    Class j spreads the bits of j over the three channels from the most significant bit down: bit 0 of each
    3-bit group goes to red, bit 1 to green, bit 2 to blue, so 1 is dark red, 2 dark green, 3 olive and so on.
    """
    palette = []
    for index in range(num_classes):
        rgb = [0, 0, 0]
        value, shift = index, 7
        while value:
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
        palette.extend(rgb)
    return palette


LIP_PALETTE = np.array(get_palette(NUM_LIP_LABELS), np.uint8).reshape(-1, 3)


def colorize(labels: np.ndarray, palette: np.ndarray = LIP_PALETTE) -> np.ndarray:
    """uint8 label map [H, W] -> uint8 RGB [H, W, 3] in SCHP's colours (indices past the palette are black)."""
    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = palette
    return table[labels.astype(np.uint8)]
