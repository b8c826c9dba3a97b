"""Training: the learned retrieval ranker (and, on a GPU, the generator) from questions with known answers."""
