"""Learned point selection (SceneSqueezer seed sections A/B): networks, training data, losses, training, inference."""
