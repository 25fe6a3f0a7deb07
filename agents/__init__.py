"""Models (one protocol, several backends), prompts, and the solver, reviewer and refiner."""
