"""The side panel beside the driving view: the car's camera, the HUD and the keys that work.

Everything a person reads sits in this column, so nothing is drawn over the track: the start line and
the car stay visible wherever the track runs. A finished lap is marked by a banner over the view.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlcar_core.render.hud import font, pygame_module, surface_from_array

PANEL_WIDTH = 200
CAMERA_SIZE = 160  # the 64x64 camera, scaled 2.5x
MARGIN = 12
LINE_HEIGHT = 22
PANEL_COLOUR = (28, 30, 34)
TEXT_COLOUR = (240, 240, 240)
DIM_COLOUR = (150, 155, 165)


def compose(
    view,
    camera: np.ndarray | None,
    lines: dict[str, str],
    keys: Sequence[str] = (),
    banner: str | None = None,
):
    """A new surface: ``view`` (a pygame surface) with the panel to its right.

    ``camera`` is what the agent sees (H, W, 3 uint8) or None; ``keys`` are the key hints that work
    right now, one per line; ``banner`` (e.g. "lap 36.5 s") is drawn across the middle of the view."""
    pg = pygame_module()
    width, height = view.get_size()
    out = pg.Surface((width + PANEL_WIDTH, height))
    out.blit(view, (0, 0))
    if banner:
        draw_banner(out, banner, (width // 2, height // 2))
    pg.draw.rect(out, PANEL_COLOUR, (width, 0, PANEL_WIDTH, height))
    x, y = width + MARGIN, MARGIN
    if camera is not None:
        inset = pg.transform.scale(surface_from_array(camera), (CAMERA_SIZE, CAMERA_SIZE))
        out.blit(inset, (x + (PANEL_WIDTH - 2 * MARGIN - CAMERA_SIZE) // 2, y))
        pg.draw.rect(
            out,
            (255, 255, 255),
            (x + (PANEL_WIDTH - 2 * MARGIN - CAMERA_SIZE) // 2, y, CAMERA_SIZE, CAMERA_SIZE),
            1,
        )
        y += CAMERA_SIZE + MARGIN
    label_font, value_font = font(20), font(24)
    for key, value in lines.items():
        out.blit(label_font.render(key, True, DIM_COLOUR), (x, y + 4))
        text = value_font.render(value.strip(), True, TEXT_COLOUR)
        out.blit(text, (width + PANEL_WIDTH - MARGIN - text.get_width(), y))
        y += LINE_HEIGHT
    if keys:
        y = max(y + MARGIN, height - MARGIN - 18 * len(keys))
        for hint in keys:
            out.blit(font(19).render(hint, True, DIM_COLOUR), (x, y))
            y += 18
    return out


def draw_banner(surface, text: str, centre: tuple[int, int]) -> None:
    """A large label on a translucent box centred at ``centre``."""
    pg = pygame_module()
    rendered = font(44).render(text, True, (255, 255, 255))
    box = pg.Surface((rendered.get_width() + 32, rendered.get_height() + 20), pg.SRCALPHA)
    box.fill((10, 90, 30, 200))
    surface.blit(box, box.get_rect(center=centre))
    surface.blit(rendered, rendered.get_rect(center=centre))
