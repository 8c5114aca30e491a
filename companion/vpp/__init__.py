"""Video Patch Pruning: ViT video segmenter, pruning modules, baselines, evaluation, pretraining."""
