"""The metrics: L1/L2, CLIP, mask localisation."""
