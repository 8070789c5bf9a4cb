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
KEY_HEIGHT = 18
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
        # A short view (CarRacing's is 350 rows) shrinks the camera so the text below still fits.
        text_height = LINE_HEIGHT * len(lines) + KEY_HEIGHT * len(keys) + 3 * MARGIN
        size = int(np.clip(height - text_height - MARGIN, 64, CAMERA_SIZE))
        left = x + (PANEL_WIDTH - 2 * MARGIN - size) // 2
        out.blit(pg.transform.scale(surface_from_array(camera), (size, size)), (left, y))
        pg.draw.rect(out, (255, 255, 255), (left, y, size, size), 1)
        y += size + MARGIN
    label_font = font(20)
    for key, value in lines.items():
        label = label_font.render(key, True, DIM_COLOUR)
        out.blit(label, (x, y + 4))
        room = PANEL_WIDTH - 2 * MARGIN - label.get_width() - MARGIN // 2
        text = _fitted(value.strip(), room)
        out.blit(text, (width + PANEL_WIDTH - MARGIN - text.get_width(), y))
        y += LINE_HEIGHT
    if keys:
        y = max(y + MARGIN, height - MARGIN - KEY_HEIGHT * len(keys))
        for hint in keys:
            out.blit(font(19).render(hint, True, DIM_COLOUR), (x, y))
            y += KEY_HEIGHT
    return out


def _fitted(value: str, room: int):
    """`value` rendered to fit `room` pixels beside its label: a smaller font first, then cut short with
    an ellipsis (long driver names like "AI: dreamer demo:best" would run over the label)."""
    for size in (24, 21, 18, 16):
        text = font(size).render(value, True, TEXT_COLOUR)
        if text.get_width() <= room:
            return text
    while len(value) > 1 and text.get_width() > room:
        value = value[:-1]
        text = font(16).render(value.rstrip() + "…", True, TEXT_COLOUR)
    return text


def draw_banner(surface, text: str, centre: tuple[int, int]) -> None:
    """A large label on a translucent box centred at ``centre``."""
    pg = pygame_module()
    rendered = font(44).render(text, True, (255, 255, 255))
    box = pg.Surface((rendered.get_width() + 32, rendered.get_height() + 20), pg.SRCALPHA)
    box.fill((10, 90, 30, 200))
    surface.blit(box, box.get_rect(center=centre))
    surface.blit(rendered, rendered.get_rect(center=centre))
