"""Agents: the DQN family, PQN and tabular Q-learning, each a task the Trainer runs."""
from agents import dqn  # noqa: F401,E402  (registers the dqn task)
