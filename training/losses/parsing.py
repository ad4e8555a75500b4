"""SCHP's parsing losses (utils/criterion.py of Self-Correction-Human-Parsing), in plain torch.

For the parsing and the fusion logits alike: 0.5 * (Lovász-softmax + cross-entropy) against the labels; for the
edge logits: cross-entropy weighted by the edge/non-edge balance of the batch; pixels labelled IGNORE count for
nothing. The edge labels are generated from the parse (a pixel whose 8-neighbourhood holds another label,
thickened by a 3x3 window), as SCHP's `generate_edge_tensor` does. SCHP's third term, the segmentation-edge
consistency, compares two argmax maps and so passes no gradient to the network: it is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = 255


def edge_labels(labels: torch.Tensor, width: int = 3) -> torch.Tensor:
    """[B, H, W] int64 {0, 1}: label boundaries of [B, H, W] labels (IGNORE pixels never make an edge)."""
    valid = labels != IGNORE
    edge = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    # vertical neighbours, horizontal neighbours, and the two diagonals, as the reference marks them
    pairs = (
        ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
        ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),
        ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))),
    )
    for here, there in pairs:
        a, b = labels[(slice(None), *here)], labels[(slice(None), *there)]
        differ = (a != b) & valid[(slice(None), *here)] & valid[(slice(None), *there)]
        edge[(slice(None), *here)] |= differ
    thick = F.conv2d(
        edge[:, None].float(), torch.ones(1, 1, width, width, device=labels.device), padding=width // 2
    )
    return (thick[:, 0] > 0).long()


def lovasz_softmax(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The Lovász-softmax loss (Berman et al. 2018) over the classes present in the batch, ignoring IGNORE."""
    probabilities = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    labels = labels.reshape(-1)
    keep = labels != IGNORE
    probabilities, labels = probabilities[keep], labels[keep]
    losses = []
    for c in labels.unique():
        foreground = (labels == c).float()
        errors = (foreground - probabilities[:, c]).abs()
        errors, order = errors.sort(descending=True)
        sorted_foreground = foreground[order]
        intersection = sorted_foreground.sum() - sorted_foreground.cumsum(0)
        union = sorted_foreground.sum() + (1 - sorted_foreground).cumsum(0)
        jaccard = 1 - intersection / union
        jaccard[1:] = jaccard[1:] - jaccard[:-1]  # the gradient of the Lovász extension
        losses.append(torch.dot(errors, jaccard))
    return torch.stack(losses).mean() if losses else logits.sum() * 0


def weighted_edge_loss(edge_logits: torch.Tensor, edges: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the edge logits, each class weighted by the other's share of the batch."""
    positives = (edges == 1).sum().float()
    negatives = (edges == 0).sum().float()
    total = (positives + negatives).clamp(min=1)
    weights = torch.stack([positives / total, negatives / total]).to(edge_logits.dtype)
    targets = edges.masked_fill(labels == IGNORE, IGNORE)
    return F.cross_entropy(edge_logits, targets, weight=weights, ignore_index=IGNORE)


def refined_targets(soft_logits: torch.Tensor, hard: torch.Tensor, cycle: int) -> torch.Tensor:
    """SCHP's label refinement: softmax((1 - a) * the aggregated model's logits + a * one-hot labels), a = 1 / (cycle
    + 1), at the labels' size ([B, C, H, W] probabilities; IGNORE pixels count as class 0 and are masked later)."""
    scaled = F.interpolate(soft_logits.float(), size=hard.shape[-2:], mode="bilinear", align_corners=True)
    one_hot = F.one_hot(hard.masked_fill(hard == IGNORE, 0), scaled.shape[1]).permute(0, 3, 1, 2).float()
    alpha = 1.0 / (cycle + 1.0)
    return ((1 - alpha) * scaled + alpha * one_hot).softmax(1)


def kl_to(logits: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SCHP's KLDivergenceLoss: KL(target || softmax(logits)) averaged over the valid pixels' class entries."""
    keep = (labels != IGNORE).reshape(-1)
    log_probabilities = logits.log_softmax(1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])[keep]
    target = target.permute(0, 2, 3, 1).reshape(-1, logits.shape[1])[keep]
    # F.kl_div's elementwise "mean", written out (torch deprecates that reduction): mean of t * (log t - log p)
    return (torch.xlogy(target, target) - target * log_probabilities).mean()


def schp_losses(
    parsing: torch.Tensor,
    fusion: torch.Tensor,
    edge: torch.Tensor,
    labels: torch.Tensor,
    soft: tuple[torch.Tensor, torch.Tensor] | None = None,
    cycle: int = 0,
) -> dict[str, torch.Tensor]:
    """SCHP's loss (lambda_s = lambda_e = 1) for logits at any size against [B, H, W] labels. With `soft` (the
    aggregated model's fusion and edge logits, self-correction cycle `cycle` >= 1) the cross-entropies become KL
    divergences to the refined labels, as SCHP's criterion does."""
    size = labels.shape[-2:]
    edges = edge_labels(labels)
    segmentation = 0
    soft_parse = refined_targets(soft[0], labels, cycle) if soft is not None else None
    for logits in (parsing, fusion):
        scaled = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=True)
        pixelwise = (
            F.cross_entropy(scaled, labels, ignore_index=IGNORE)
            if soft_parse is None
            else kl_to(scaled, soft_parse, labels)
        )
        segmentation = segmentation + 0.5 * (lovasz_softmax(scaled, labels) + pixelwise)
    edge_scaled = F.interpolate(edge.float(), size=size, mode="bilinear", align_corners=True)
    if soft is None:
        edge_loss = weighted_edge_loss(edge_scaled, edges, labels)
    else:
        edge_loss = kl_to(edge_scaled, refined_targets(soft[1], edges, cycle), labels)
    return {"loss": segmentation + edge_loss, "segmentation": segmentation, "edge": edge_loss}
