"""Training of the shapes model family: a trainer per stage, EMA, resumable checkpoints."""
