"""The smoke world's stand-in for a frozen foundation model: a small ViT pretrained here, and probes."""
