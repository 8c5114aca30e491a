"""Video Patch Pruning: a ViT video segmenter, its pruning modules, baselines, evaluation and pretraining."""
