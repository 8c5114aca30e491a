"""UncertainSAM: promptable segmenter, heads on its tokens, baselines, evaluation, pretraining."""
