"""Training loops for the built-in models (ε-prediction diffusion, noise-aware classifiers)."""
