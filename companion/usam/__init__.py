"""UncertainSAM: a promptable segmenter, heads on its tokens, Monte-Carlo baselines, evaluation and pretraining."""
