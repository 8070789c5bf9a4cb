"""A pygame window that shows frames and reads the keyboard (arrows/WASD, R, T, Esc)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from rlcar_core.render.hud import font, pygame_module, surface_from_array
from rlcar_core.render.motion import DISPLAY_FPS, FramePacer


class Controls(NamedTuple):
    action: np.ndarray  # [steer, gas, brake] from the keys held down
    quit: bool
    reset: bool
    toggle: bool


class Window:
    """``fps`` > 0 paces ``show`` itself (one frame per call); play paces with ``frame_fractions``."""

    def __init__(
        self, size: tuple[int, int], title: str = "rlcar", fps: int = 0, display_fps: int = DISPLAY_FPS
    ):
        self.pygame = pg = pygame_module()
        pg.display.init()
        self.size = size
        self.screen = pg.display.set_mode(size)
        pg.display.set_caption(title)
        self.clock = pg.time.Clock()
        self.fps = fps
        self.display_fps = display_fps
        self.pacer = FramePacer(display_fps)

    def show(self, frame) -> None:
        """Show an (H, W, 3) uint8 array or a pygame surface, scaled to the window if needed."""
        pg = self.pygame
        surface = frame if isinstance(frame, pg.Surface) else surface_from_array(frame)
        if surface.get_size() != self.size:
            surface = pg.transform.scale(surface, self.size)
        self.screen.blit(surface, (0, 0))
        pg.display.flip()
        if self.fps > 0:
            self.clock.tick(self.fps)

    def frame_fractions(self, seconds: float) -> Iterator[float]:
        """The fractions of ``seconds`` at which to draw a frame; iterating waits between them."""
        return self.pacer.fractions(seconds)

    def splash(self, message: str, started: float | None = None) -> None:
        """A dark screen with ``message`` (and the seconds since ``started``): shown at once, so a
        window never sits black while JAX compiles."""
        pg = self.pygame
        self.screen.fill((24, 26, 30))
        if started is not None:
            message = f"{message}  {time.perf_counter() - started:.0f} s"
        text = font(32).render(message, True, (235, 235, 235))
        self.screen.blit(text, text.get_rect(center=(self.size[0] // 2, self.size[1] // 2)))
        hint = font(22).render("Esc quits", True, (150, 155, 165))
        self.screen.blit(hint, hint.get_rect(center=(self.size[0] // 2, self.size[1] // 2 + 36)))
        pg.display.flip()

    def quit_requested(self) -> bool:
        """Read pending events, only to see whether the window was closed or Esc pressed (while
        loading, when no other key means anything)."""
        pg = self.pygame
        return any(
            event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key in (pg.K_ESCAPE, pg.K_q))
            for event in pg.event.get()
        )

    def poll(self) -> Controls:
        pg = self.pygame
        quit_requested = reset = toggle = False
        for event in pg.event.get():
            if event.type == pg.QUIT:
                quit_requested = True
            elif event.type == pg.KEYDOWN:
                if event.key in (pg.K_ESCAPE, pg.K_q):
                    quit_requested = True
                elif event.key == pg.K_r:
                    reset = True
                elif event.key == pg.K_t:
                    toggle = True
        keys = pg.key.get_pressed()
        left = keys[pg.K_LEFT] or keys[pg.K_a]
        right = keys[pg.K_RIGHT] or keys[pg.K_d]
        gas = keys[pg.K_UP] or keys[pg.K_w]
        brake = keys[pg.K_DOWN] or keys[pg.K_s]
        action = np.array([float(right) - float(left), float(gas), float(brake)], np.float32)
        return Controls(action, quit_requested, reset, toggle)

    def close(self) -> None:
        self.pygame.display.quit()
