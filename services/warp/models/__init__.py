"""LaDI-VTON's warping module: the TPS regression network and the refinement U-Net (plain torch)."""

from services.warp.models.refinement_unet import RefinementConfig, RefinementUNet
from services.warp.models.tps_grid import TPSGridGen
from services.warp.models.tps_regression import ConvNetTPS, TPSConfig

__all__ = ["ConvNetTPS", "RefinementConfig", "RefinementUNet", "TPSConfig", "TPSGridGen"]
