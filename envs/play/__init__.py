"""Watching and playing: a pygame window where an agent plays with its Q-values beside the game, a person takes
over or plays alone, and headless recordings of the same view.

`player` is the state machine (pause, step, speed, takeover, episodes), `overlay` draws it, `window` runs it
interactively, `recording` writes videos (and `record_episode` for W&B), `controls` maps keys to actions, `cli`
is the `lab play` command.
"""
import os

os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # the lab plays no sound; spares ALSA warnings without a card
