"""The editing core: pipeline, distillation, attention, focus, images, SDXL, edit path, regions."""
