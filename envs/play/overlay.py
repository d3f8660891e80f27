"""Drawing: the game frame beside a panel with the agent's Q-values, the episode's numbers and the key help.

Everything is drawn onto one fixed-size canvas (the same for the window, screenshots and recordings, sized in
multiples of 16 so video encoders take it as is); `fit` scales it into a window of any size.
"""
from __future__ import annotations

import numpy as np
import pygame

from envs.play.controls import action_names, describe
from envs.play.player import Player

GAME_HEIGHT = 480
MAX_GAME_WIDTH = 960
PANEL_WIDTH = 320
MARGIN = 12

BACKGROUND = (18, 20, 26)
PANEL = (32, 35, 44)
TEXT = (225, 225, 230)
DIM = (140, 142, 155)
BAR = (70, 130, 210)
CHOSEN = (255, 170, 40)  # the action the next step takes
AGENT_BADGE = (80, 190, 120)
HUMAN_BADGE = (225, 90, 90)


def _multiple_of_16(x: float) -> int:
    return max(16, int(np.ceil(x / 16)) * 16)


def frame_to_surface(frame: np.ndarray) -> pygame.Surface:
    height, width = frame.shape[:2]
    return pygame.image.frombytes(np.ascontiguousarray(frame, dtype=np.uint8).tobytes(), (width, height), "RGB")


def surface_to_array(surface: pygame.Surface) -> np.ndarray:
    """H×W×3 uint8 (row-major bytes: far faster than pygame.surfarray's column-major copy)."""
    width, height = surface.get_size()
    return np.frombuffer(pygame.image.tobytes(surface, "RGB"), dtype=np.uint8).reshape(height, width, 3)


def fit(canvas: pygame.Surface, window: pygame.Surface) -> None:
    """Scale the canvas into the window keeping its aspect ratio, centred, bars of background around it."""
    (ww, wh), (cw, ch) = window.get_size(), canvas.get_size()
    scale = min(ww / cw, wh / ch)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    window.fill(BACKGROUND)
    scaled = canvas if size == (cw, ch) else pygame.transform.smoothscale(canvas, size)
    window.blit(scaled, ((ww - size[0]) // 2, (wh - size[1]) // 2))


class Overlay:
    """Lays out and draws one player's view, sized to its env's rendered frames."""

    def __init__(self, player: Player, title: str, subtitle: str = "") -> None:
        if not pygame.font.get_init():
            pygame.font.init()
        self.player = player
        height, width = player.frame.shape[:2]
        self.scale = min(GAME_HEIGHT / height, MAX_GAME_WIDTH / width)
        game_w, game_h = max(1, round(width * self.scale)), max(1, round(height * self.scale))
        box_w = _multiple_of_16(game_w)
        self.game_rect = pygame.Rect((box_w - game_w) // 2, (GAME_HEIGHT - game_h) // 2, game_w, game_h)
        self.panel_rect = pygame.Rect(box_w, 0, PANEL_WIDTH, GAME_HEIGHT)
        self.size = (box_w + PANEL_WIDTH, GAME_HEIGHT)
        self.canvas = pygame.Surface(self.size)
        self.title, self.subtitle = title, subtitle
        self.names = action_names(player.env)
        self.key_lines = describe(player.controls, self.names)
        self.big, self.font, self.small = (pygame.font.Font(None, s) for s in (30, 22, 18))

    def draw(self, fps: float | None = None) -> pygame.Surface:
        """The whole view; `fps` is the measured frame rate (None in recordings, where it means nothing)."""
        player = self.player
        self.canvas.fill(BACKGROUND)
        self._draw_game(player.frame)
        self.canvas.fill(PANEL, self.panel_rect)
        self._draw_panel(player, fps)
        return self.canvas

    def _draw_game(self, frame: np.ndarray) -> None:
        surface = frame_to_surface(frame)
        size = self.game_rect.size
        # Pixel art stays crisp when enlarged; large frames shrink smoothly.
        scaled = pygame.transform.scale(surface, size) if self.scale >= 1 else pygame.transform.smoothscale(
            surface, size)
        self.canvas.blit(scaled, self.game_rect)

    def _text(self, text: str, pos: tuple[int, int], font: pygame.font.Font, color: tuple[int, int, int]) -> int:
        """Draw one line clipped to the panel; returns the y below it."""
        image = font.render(text, True, color)
        room = self.panel_rect.right - MARGIN - pos[0]
        self.canvas.blit(image, pos, area=pygame.Rect(0, 0, room, image.get_height()))
        return pos[1] + font.get_linesize() + 2

    def _draw_panel(self, player: Player, fps: float | None) -> None:
        x, y = self.panel_rect.x + MARGIN, MARGIN
        y = self._text(self.title, (x, y), self.big, TEXT)
        y = self._text(self.subtitle, (x, y), self.small, DIM)

        badge = self.font.render("HUMAN" if player.human else "AGENT", True, BACKGROUND)
        badge_rect = badge.get_rect(topleft=(x, y + 2)).inflate(10, 4)
        pygame.draw.rect(self.canvas, HUMAN_BADGE if player.human else AGENT_BADGE, badge_rect, border_radius=4)
        self.canvas.blit(badge, badge.get_rect(center=badge_rect.center))
        state = "paused" if player.paused else "playing"
        if player.episode_over:
            state = "episode over"
        elif player.human and player.action is None and not player.paused:
            state = "waiting for a key"
        self._text(f"{state}   speed {player.speed:g}x", (badge_rect.right + 10, y + 2), self.font, TEXT)
        y = badge_rect.bottom + 8

        of = f"/{player.episodes}" if player.episodes is not None else ""
        y = self._text(f"episode {player.episode}{of}   step {player.step}", (x, y), self.font, TEXT)
        y = self._text(f"return {player.episode_return:.2f}   reward {player.last_reward:+.2f}", (x, y), self.font,
                       TEXT)
        rate = f"{player.steps_per_second:g} steps/s" + (f"   fps {fps:.1f}" if fps else "")  # 0 until measured
        eps = f"ε {player.epsilon:.2f}   " if player.agent is not None else ""
        y = self._text(eps + rate, (x, y), self.font, TEXT)

        help_lines = self._help(player)
        line = self.small.get_linesize() + 2
        help_top = self.panel_rect.bottom - MARGIN - len(help_lines) * line
        keys_top = help_top
        if player.human:  # the keys under the Q-values, at most 6 lines of them
            keys_top = help_top - (1 + min(len(self.key_lines), 6)) * line - 8
        if player.q_values is not None:
            y = self._draw_q_values(player, x, y + 8, keys_top)
        if player.human:
            y = self._text("your keys:", (x, y + 8), self.small, DIM)
            for text in self.key_lines:
                if y + line > help_top:
                    break
                y = self._text(text, (x + 8, y), self.small, TEXT)
        for text in help_lines:
            help_top = self._text(text, (x, help_top), self.small, DIM)

    def _draw_q_values(self, player: Player, x: int, top: int, bottom: int) -> int:
        q = player.q_values
        if player.human:
            header = "Q-values (you choose)"
        elif player.explored:
            header = "Q-values (random action, ε)"
        else:
            header = "Q-values (greedy)"
        top = self._text(header, (x, top), self.small, DIM)
        row = int(np.clip((bottom - top) / len(q), 10, 24))
        name_w, value_w = 96, 58
        bar_x, bar_w = x + name_w, self.panel_rect.width - 2 * MARGIN - name_w - value_w
        low, high = min(0.0, float(q.min())), max(0.0, float(q.max()))
        span = (high - low) or 1.0
        zero = bar_x + round((0.0 - low) / span * bar_w)
        chosen, greedy = player.action, int(q.argmax())
        for i, value in enumerate(q):
            y = top + i * row
            if y + row > bottom:
                break
            color = CHOSEN if i == chosen else BAR
            end = bar_x + round((float(value) - low) / span * bar_w)
            pygame.draw.rect(self.canvas, color, pygame.Rect(min(zero, end), y + 2, max(1, abs(end - zero)), row - 4))
            name = self.names[i] if i < len(self.names) else f"action {i}"
            self._text(name + (" *" if i == greedy else ""), (x, y), self.small, CHOSEN if i == chosen else TEXT)
            self._text(f"{value:+.2f}", (bar_x + bar_w + 6, y), self.small, TEXT)
        pygame.draw.line(self.canvas, DIM, (zero, top), (zero, min(bottom, top + row * len(q))))
        return min(bottom, top + row * len(q))

    def _help(self, player: Player) -> list[str]:
        taken = player.controls.keys if player.human else set()  # while a person plays, the game's keys steer it

        def item(action: str, *keys: tuple[int, str]) -> str:
            free = "/".join(name for key, name in keys if key not in taken)
            return f"{free}: {action}" if free else ""

        def line(*items: str) -> str:
            return "   ".join(text for text in items if text)

        takeover = ("back to the agent" if player.human else "take over") if player.agent is not None else ""
        lines = [line(item("pause", (pygame.K_SPACE, "space"), (pygame.K_p, "p")),
                      item("one step", (pygame.K_RIGHT, "right"), (pygame.K_PERIOD, "."))),
                 line(item("speed", (pygame.K_EQUALS, "+/-")), item("reset", (pygame.K_r, "r")),
                      item(takeover, (pygame.K_h, "h")) if takeover else ""),
                 line(item("screenshot", (pygame.K_s, "s"), (pygame.K_F12, "F12")),
                      item("quit", (pygame.K_q, "q"), (pygame.K_ESCAPE, "esc")))]
        if player.human:
            lines.insert(0, "you play: the game's keys steer the game")
        return [text for text in lines if text]
