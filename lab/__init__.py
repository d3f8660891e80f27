"""gym lab: one trainer for Deep Q-Learning agents, NLP and vision models."""

__version__ = "0.1.0"
