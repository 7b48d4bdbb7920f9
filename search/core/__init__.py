"""Pure search logic: prompts, ranking, classification, localisation, one-file scoring, writers."""
