"""Environments: the lab's own Gymnasium games, wrappers and env factories."""
from envs import games  # noqa: F401  (registers the lab/… games with Gymnasium)
from envs.play import cli  # noqa: F401  (registers the `lab play` command)
