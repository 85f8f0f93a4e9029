"""Evaluation: candidate vs baseline through shipped `evaluate` modules, and the promotion gate."""
