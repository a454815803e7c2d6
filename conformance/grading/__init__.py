"""Grading: which behaviours conform under which profile."""
