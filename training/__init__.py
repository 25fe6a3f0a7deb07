"""Datasets from trajectories, TRL + PEFT training, serving with adapters, improve rounds."""
