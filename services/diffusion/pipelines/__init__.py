"""Diffusion pipelines of the try-on stage."""

from services.diffusion.pipelines.ladi_vton import LadiVtonPipeline

__all__ = ["LadiVtonPipeline"]
