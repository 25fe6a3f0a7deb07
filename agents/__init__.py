"""Models (one protocol, several backends, the factory), adapters, prompts, and the agents:
solver, reviewer, refiner and editor."""
