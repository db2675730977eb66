"""Collaboration replay (MasRouter-style modes) from the recorded multiple-choice responses."""
