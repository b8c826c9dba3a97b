"""The answer stage: turns retrieved chunks into a short answer with numbered citations."""
