"""Building blocks of models and guides: MLPs, convolutional networks, normalizing flows, image augmentations, the
observation site scored from a table of component densities, and the k-means++ start."""
