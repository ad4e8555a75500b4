"""Human parsing networks (plain torch, weight-compatible with their official checkpoints)."""
