"""Issue 16, class 3 on the openvto studio photos: every pixel of the old garment's region becomes the new garment,
skin, the lower garment or background, and the skin carries the person's own tone and shading.

Each test measures one defect the README's contact sheet showed, on the photos that showed it (the numbers before
this work are in the comments): a jacket's panels left under a shorter top, old jeans beside narrower leggings,
white bands and lines of the product photo's backdrop on the new trousers, a pale outline of the old garment in
the backdrop, and flat, hard-edged forearms where long sleeves were.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.unit.test_embedded_tryon import TryOn, examples_path, try_on
from vton.runtime.vocab import Category, Keypoint, Lip


def lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def colour_left(t: TryOn, colour: np.ndarray, hue: float, lightness: float) -> float:
    """Pixels of the result outside the new garment within `hue` (a, b) and `lightness` (L) of an old garment's
    Lab colour, as a share of the person photo's pixels of that colour."""

    def like(image: np.ndarray) -> np.ndarray:
        c = lab(image)
        return (np.hypot(c[..., 1] - colour[1], c[..., 2] - colour[2]) < hue) & (
            np.abs(c[..., 0] - colour[0]) < lightness
        )

    return float((like(t.result) & (t.warped_mask == 0)).sum() / max(like(t.person).sum(), 1))


def backdrop_in_garment(t: TryOn) -> float:
    """Share of the warped garment's pixels of its product photo's backdrop colour (within 12 Lab units of the
    photo's border): the backdrop carried onto the person as bands along a leg or a line between the legs."""
    photo = lab(t.garment)
    border = np.concatenate([photo[:8].reshape(-1, 3), photo[-8:].reshape(-1, 3)])
    backdrop = np.median(border, axis=0)
    placed = t.warped_mask > 0
    near = np.linalg.norm(lab(t.warped_garment) - backdrop, axis=2) < 12
    return float((placed & near).sum() / placed.sum())


def test_a_jackets_panels_below_a_shorter_tops_hem_are_gone(examples, blazepose):
    """A black T-shirt onto the woman in a navy blazer over charcoal trousers: the parse took the blazer's
    panels at the hips for the trousers, and they stayed below the T-shirt's hem (7.8 % of the blazer's navy
    was left in the result outside the new garment). Under them the trousers go on up to the waist."""
    t = try_on(
        blazepose,
        examples_path("avatars/4.png"),
        examples_path("clothes/shirts/4_front.jpg"),
        Category.UPPER_BODY,
    )
    person = lab(t.person)
    blazer = np.isin(t.labels, (Lip.UPPER_CLOTHES, Lip.COAT)) & (person[..., 0] < 30)
    navy = np.median(person[blazer], axis=0)
    assert navy[2] < -8  # it is the navy blazer
    assert colour_left(t, navy, hue=5, lightness=6) < 0.02
    # What the panels hid at the hips is the trousers' colour now, not the backdrop's nor skin.
    k = t.keypoints
    hips_y = int(k[[Keypoint.R_HIP, Keypoint.L_HIP], 1].mean())
    hip_x = [int(k[Keypoint.R_HIP, 0]), int(k[Keypoint.L_HIP, 0])]
    trousers = np.median(person[t.labels == Lip.PANTS], axis=0)
    hips = lab(t.result)[hips_y - 10 : hips_y + 10, min(hip_x) : max(hip_x)].reshape(-1, 3)
    assert np.linalg.norm(np.median(hips, axis=0) - trousers) < 10


def test_narrower_leggings_leave_no_old_jeans_and_no_backdrop_bands(examples, blazepose):
    """Black leggings onto the woman in light jeans under a short denim jacket: the jeans' waistband between
    the jacket's fronts and their sides at the hips stayed (6.1 % of the jeans' colour), and the leggings came
    with white bands of their photo's backdrop along the legs' outer edges (3.5 % of the warped leggings)."""
    t = try_on(
        blazepose,
        examples_path("avatars/2.png"),
        examples_path("clothes/pants/2_front.jpg"),
        Category.LOWER_BODY,
    )
    jeans = np.median(lab(t.person)[np.isin(t.labels, (Lip.PANTS, Lip.SKIRT))], axis=0)
    assert jeans[2] < -5  # light blue
    assert colour_left(t, jeans, hue=6, lightness=15) < 0.02
    assert backdrop_in_garment(t) < 0.002


@pytest.mark.parametrize(
    ("person", "garment"),
    [
        ("avatars/3.png", "clothes/pants/3_front.jpg"),
        ("avatars/1.png", "clothes/pants/1_front.jpg"),
        ("avatars/4.png", "clothes/pants/1_front.jpg"),
    ],
    ids=["black-jeans", "blue-jeans", "blue-jeans-legs-together"],
)
def test_no_line_of_the_product_photos_backdrop_between_the_legs(examples, person, garment, blazepose):
    """Jeans onto a person in trousers: the gap between the product photo's legs, shadowed at its top, was
    taken for jeans and drawn down the middle as a thin white line, and the outline's light halo along the legs
    (0.4 %, 2.4 % and 1.8 % of the warped jeans were the product photo's backdrop). Where the two legs touch,
    the slits they enclose are closed (no backdrop between them)."""
    t = try_on(blazepose, examples_path(person), examples_path(garment), Category.LOWER_BODY)
    assert backdrop_in_garment(t) < 0.002
    placed = t.warped_mask > 0
    count, parts, stats, _ = cv2.connectedComponentsWithStats((~placed).astype(np.uint8), connectivity=4)
    h, w = placed.shape
    enclosed = [
        stats[i, cv2.CC_STAT_AREA]
        for i in range(1, count)
        if stats[i, 0] > 0
        and stats[i, 1] > 0
        and stats[i, 0] + stats[i, 2] < w
        and stats[i, 1] + stats[i, 3] < h
    ]
    assert sum(enclosed) < 0.001 * placed.sum()


def border_profile(t: TryOn) -> tuple[float, float]:
    """(step, dip) of the backdrop's lightness across the inpainting mask's border, above the hips where only
    backdrop lies on both sides: `step` is the ring just outside (0-3 px) less the band just inside (1-4 px),
    `dip` the ring less the filled backdrop further in (8-30 px). A fill darker than the backdrop's glow around
    the person leaves the old garment's outline as a pale line."""
    inside = t.mask > 0
    d_in = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
    d_out = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 3)
    backdrop = (t.labels == Lip.BACKGROUND) & (t.warped_mask == 0)
    backdrop[int(t.keypoints[[Keypoint.R_HIP, Keypoint.L_HIP], 1].min()) :] = False
    lightness = lab(t.result)[..., 0]
    ring = lightness[backdrop & ~inside & (d_out <= 3)].mean()
    band = lightness[backdrop & inside & (d_in >= 1) & (d_in <= 4)].mean()
    deep = lightness[backdrop & inside & (d_in >= 8) & (d_in <= 30)].mean()
    return float(ring - band), float(ring - deep)


def test_the_old_garments_outline_does_not_stay_in_the_backdrop(examples, blazepose):
    """A shirt onto the man in a loose hoodie: the backdrop filled where the hoodie was stayed darker than the
    glow around him, and the hoodie's outline showed as a pale line (1.33 L across the border, 0.91 L to the
    fill further in; 0.54 and 0.15 now)."""
    t = try_on(
        blazepose,
        examples_path("avatars/1.png"),
        examples_path("clothes/shirts/1_front.jpg"),
        Category.UPPER_BODY,
    )
    step, dip = border_profile(t)
    assert step < 0.9
    assert abs(dip) < 0.4


def forearm(t: TryOn, chain: tuple[Keypoint, Keypoint, Keypoint], hand: int) -> tuple[float, float]:
    """(colour difference, light ratio) of the skin filled on a forearm where a long sleeve was: the Lab distance
    of its colour along the bone (elbow to wrist, 30-75 %) to the lit half of the person's own hand, and its
    lightness on the bone over that a couple of pixels inside its outline (found across the arm where the colour
    stops being the hand's)."""
    person, result = lab(t.person), lab(t.result)
    own = t.labels == hand
    lit = own & (person[..., 0] >= np.median(person[..., 0][own]))
    tone = np.median(person[lit], axis=0)
    elbow, wrist = (t.keypoints[k, :2].astype(np.float64) for k in chain[1:])
    along = (wrist - elbow) / np.linalg.norm(wrist - elbow)
    across = np.array([-along[1], along[0]])
    colours, centre, edge = [], [], []
    for share in np.linspace(0.3, 0.75, 10):
        point = elbow + share * (wrist - elbow)
        x, y = (int(round(v)) for v in point)
        colours.append(result[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).mean(axis=0))
        centre.append(result[y, x, 0])
        for sign in (-1, 1):
            reach = 0
            while reach < 80:
                px, py = (int(round(v)) for v in point + sign * (reach + 1) * across)
                if np.linalg.norm(result[py, px] - tone) > 18:
                    break
                reach += 1
            px, py = (int(round(v)) for v in point + sign * max(reach - 2, 0) * across)
            edge.append(result[py, px, 0])
    difference = float(np.linalg.norm(np.median(np.array(colours), axis=0) - tone))
    return difference, float(np.median(centre) / np.median(edge))


@pytest.mark.parametrize(
    ("person", "garment"),
    [("avatars/4.png", "clothes/shirts/4_front.jpg"), ("avatars/2.png", "clothes/shirts/2_front.jpg")],
    ids=["tee-onto-blazer", "shirt-onto-jacket"],
)
def test_forearms_where_long_sleeves_were_take_the_persons_tone_and_a_rounded_light(
    examples, person, garment, blazepose
):
    """Short sleeves onto long ones: the forearms were filled flat in a duller, darker tone than the person's
    hands (15-17 Lab units from them on the blazer, 6-7 on the jacket) and no lighter along the bone than at the
    outline (ratios 1.00-1.14). Now they take their own hand's tone and a lit cylinder's light."""
    t = try_on(blazepose, examples_path(person), examples_path(garment), Category.UPPER_BODY)
    for chain, hand in (
        ((Keypoint.R_SHOULDER, Keypoint.R_ELBOW, Keypoint.R_WRIST), Lip.RIGHT_ARM),
        ((Keypoint.L_SHOULDER, Keypoint.L_ELBOW, Keypoint.L_WRIST), Lip.LEFT_ARM),
    ):
        difference, light = forearm(t, chain, hand)
        assert difference < 6, chain[0].name
        assert light > 1.15, chain[0].name
