"""The contact sheet of `vton eval`: one PNG with a row per sample (its images side by side, labelled columns)."""

from __future__ import annotations

import cv2
import numpy as np

PAIRED_COLUMNS = ("person", "garment", "warped garment", "result", "real photo")
UNPAIRED_COLUMNS = PAIRED_COLUMNS[:4]


def _as_rgb(cell: np.ndarray) -> np.ndarray:
    if cell.ndim == 2:
        return cv2.cvtColor(cell, cv2.COLOR_GRAY2RGB)
    if cell.shape[2] == 4:
        return cell[:, :, :3]
    return cell


def contact_sheet(
    rows: list[list[np.ndarray]],
    labels: list[str] | None = None,
    cell_height: int = 384,
    gap: int = 4,
    header: int = 32,
) -> np.ndarray:
    """One RGB image: a row per sample, its images side by side at a common height, column labels on top.

    Rows may differ in length (an unpaired sample has no real photo); missing cells stay blank. The default
    labels are person | garment | warped garment | result | real photo (or the first four when no row has a
    fifth image).
    """
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    columns = max(len(r) for r in rows)
    if labels is None:
        labels = list(PAIRED_COLUMNS if columns == 5 else UNPAIRED_COLUMNS)[:columns]
    # Every cell at the common height, every column as wide as its widest cell.
    scaled = [[_scale_to_height(_as_rgb(c), cell_height) for c in row] for row in rows]
    widths = [max((r[i].shape[1] for r in scaled if i < len(r)), default=cell_height) for i in range(columns)]
    sheet_w = sum(widths) + gap * (columns + 1)
    sheet_h = header + len(rows) * (cell_height + gap) + gap
    sheet = np.full((sheet_h, sheet_w, 3), 255, np.uint8)
    x = gap
    for i, width in enumerate(widths):
        text = labels[i] if i < len(labels) else ""
        cv2.putText(
            sheet, text, (x + 4, header - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA
        )
        for j, row in enumerate(scaled):
            if i < len(row):
                y = header + gap + j * (cell_height + gap)
                cell = row[i]
                offset = (width - cell.shape[1]) // 2
                sheet[y : y + cell_height, x + offset : x + offset + cell.shape[1]] = cell
        x += width + gap
    return sheet


def _scale_to_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    interpolation = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)
