"""Agents: the DQN family, PQN and tabular Q-learning, each a task the Trainer runs."""
from agents import dqn  # noqa: F401,E402  (registers the dqn task)
from agents import pqn  # noqa: F401,E402  (registers the pqn task)
from agents import tabular  # noqa: F401,E402  (registers the qlearning task)
from agents import cli  # noqa: F401,E402  (registers the qtable command)
