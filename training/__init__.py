"""Trajectory store, datasets, TRL + PEFT training, serving with adapters."""
