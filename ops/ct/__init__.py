"""Continuous training: triggers, one cycle (sync -> dataset -> train -> eval -> register -> canary) and its state."""
