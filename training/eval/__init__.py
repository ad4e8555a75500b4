"""Evaluation shared by `vton eval` and training: paired metrics, perceptual and distribution metrics from
network weight files, contact sheets, and the evaluation loop over a dataset's paired split."""

from training.eval.contact_sheet import contact_sheet
from training.eval.metrics import iou, l1, psnr, ssim

__all__ = ["contact_sheet", "iou", "l1", "psnr", "ssim"]
