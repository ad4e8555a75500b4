"""Datasets: one reader per layout (VITON-HD, Dress Code, CP-VTON) behind one sample type, and the builder."""
