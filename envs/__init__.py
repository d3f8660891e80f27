"""Environments: the lab's own Gymnasium games, wrappers and env factories."""
from envs import games  # noqa: F401  (registers the lab/… games with Gymnasium)
