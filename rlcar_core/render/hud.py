"""The heads-up display: ``key: value`` lines on a translucent panel, and numpy <-> pygame frames."""

from __future__ import annotations

import functools
import os

import numpy as np


def pygame_module():
    # Imported lazily: pygame initialises SDL and prints a banner on import.
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    pygame.font.init()
    return pygame


@functools.cache
def font(size: int):
    """pygame's default font at ``size`` points, loaded once per size."""
    return pygame_module().font.Font(None, size)


def draw_hud(surface, lines: dict[str, str], font_=None) -> None:
    """Draw ``lines`` in the top-left corner of a pygame ``surface`` (frames without a side panel)."""
    pg = pygame_module()
    font_ = font_ or font(22)
    rendered = [font_.render(f"{key}: {value}", True, (255, 255, 255)) for key, value in lines.items()]
    if not rendered:
        return
    width = max(r.get_width() for r in rendered) + 16
    panel = pg.Surface((width, 8 + 20 * len(rendered)), pg.SRCALPHA)
    panel.fill((0, 0, 0, 160))
    surface.blit(panel, (8, 8))
    for row, text in enumerate(rendered):
        surface.blit(text, (16, 12 + 20 * row))


def surface_from_array(frame: np.ndarray):
    return pygame_module().surfarray.make_surface(np.ascontiguousarray(np.asarray(frame).transpose(1, 0, 2)))


def array_from_surface(surface) -> np.ndarray:
    return np.ascontiguousarray(pygame_module().surfarray.array3d(surface).transpose(1, 0, 2))


def with_hud(frame: np.ndarray, lines: dict[str, str]) -> np.ndarray:
    """A copy of an RGB ``frame`` with the HUD drawn on it."""
    surface = surface_from_array(frame)
    draw_hud(surface, lines)
    return array_from_surface(surface)
