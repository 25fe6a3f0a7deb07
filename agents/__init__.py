"""Models (one protocol, several backends), adapters, prompts, and the solver, reviewer and refiner."""
