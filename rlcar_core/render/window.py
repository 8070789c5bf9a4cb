"""A pygame window that shows frames and reads the keyboard (arrows/WASD, R, T, Esc)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rlcar_core.render.hud import pygame_module, surface_from_array


class Controls(NamedTuple):
    action: np.ndarray  # [steer, gas, brake] from the keys held down
    quit: bool
    reset: bool
    toggle: bool


class Window:
    def __init__(self, size: tuple[int, int], title: str = "rlcar", fps: int = 10):
        self.pygame = pg = pygame_module()
        pg.display.init()
        self.size = size
        self.screen = pg.display.set_mode(size)
        pg.display.set_caption(title)
        self.clock = pg.time.Clock()
        self.fps = fps

    def show(self, frame: np.ndarray) -> None:
        pg = self.pygame
        surface = surface_from_array(frame)
        if surface.get_size() != self.size:
            surface = pg.transform.scale(surface, self.size)
        self.screen.blit(surface, (0, 0))
        pg.display.flip()
        self.clock.tick(self.fps)

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
