"""Models: learned detector parameters, training, evaluation and the versioned registry."""
