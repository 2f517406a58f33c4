"""Top-down rendering of a MiniGrid grid in the paper's agent styles, the resize, and the matting.

The official BLAST code renders with gym-minigrid's `RGBImgObsWrapper(tile_size=8)` (48x48 for the
6x6 grid, 3x supersampled, no highlight) and resizes to 64x64 with `cv2.INTER_NEAREST`. We compose
the same frame from cached tiles: cells without the agent come from minigrid's own tile renderer,
and the agent's tile is drawn here so that its shape and colour can follow the variant (spec §4).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from minigrid.core.grid import Grid
from minigrid.core.world_object import WorldObj
from minigrid.utils.rendering import (
    downsample,
    fill_coords,
    point_in_circle,
    point_in_rect,
    point_in_triangle,
    rotate_fn,
)

TILE = 8
"""Pixels per grid cell before the resize (the official code's tile_size)."""
SUBDIVS = 3
"""Supersampling factor of a tile, as in minigrid (anti-aliasing)."""

AgentStyle = Literal["triangle", "small_triangle", "color_circle"]

GRID_GREY = (100, 100, 100)
AGENT_RED = (255, 0, 0)
# The agent's triangle in tile coordinates, pointing right (direction 0); minigrid's shape.
TRIANGLE = ((0.12, 0.19), (0.87, 0.50), (0.12, 0.81))
# color_direction: one colour per direction 0 (right), 1 (down), 2 (left), 3 (up) (spec §4).
DIRECTION_COLORS = {
    0: (100, 150, 100),
    1: (50, 100, 150),
    2: (100, 150, 150),
    3: (50, 100, 100),
}
BALL_RADIUS = 0.31

Matting = Literal["pixel", "channel"]


def _agent_shape(style: AgentStyle, direction: int):
    """The agent's coverage test `fn(x, y) -> bool` in tile coordinates, and its colour."""
    if style == "color_circle":
        # A circle shows no direction, so only the colour can tell it.
        return point_in_circle(0.5, 0.5, BALL_RADIUS), DIRECTION_COLORS[direction]
    # smaller_agent: half the side about the tile centre is a quarter of the area.
    scale = 0.5 if style == "small_triangle" else 1.0
    verts = [(0.5 + scale * (x - 0.5), 0.5 + scale * (y - 0.5)) for x, y in TRIANGLE]
    shape = rotate_fn(point_in_triangle(*verts), cx=0.5, cy=0.5, theta=0.5 * math.pi * direction)
    return shape, AGENT_RED


def agent_tile(obj: WorldObj | None, direction: int, style: AgentStyle) -> np.ndarray:
    """The (TILE, TILE, 3) uint8 tile of the agent standing on `obj`, drawn as minigrid draws."""
    side = TILE * SUBDIVS
    img = np.zeros((side, side, 3), dtype=np.uint8)
    fill_coords(img, point_in_rect(0, 0.031, 0, 1), GRID_GREY)
    fill_coords(img, point_in_rect(0, 1, 0, 0.031), GRID_GREY)
    if obj is not None:
        obj.render(img)
    shape, color = _agent_shape(style, direction)
    fill_coords(img, shape, color)
    return downsample(img, SUBDIVS).astype(np.uint8)


class GridRenderer:
    """Renders a minigrid `Grid` with the agent in one style, resized to (size, size, 3) uint8."""

    def __init__(self, style: AgentStyle, size: int, grid_cells: int) -> None:
        self.style = style
        self.size = size
        src = grid_cells * TILE
        # cv2.INTER_NEAREST's source index: floor(dst * src / dst_size).
        index = (np.arange(size) * src) // size
        self._index = np.ix_(index, index)
        self._tiles: dict[tuple, np.ndarray] = {}
        self._canvas = np.zeros((src, src, 3), dtype=np.uint8)

    def _tile(self, obj: WorldObj | None, direction: int | None) -> np.ndarray:
        key = (obj.encode() if obj is not None else None, direction)
        tile = self._tiles.get(key)
        if tile is None:
            if direction is None:
                tile = Grid.render_tile(obj, tile_size=TILE).astype(np.uint8)
            else:
                tile = agent_tile(obj, direction, self.style)
            self._tiles[key] = tile
        return tile

    def render(self, grid: Grid, agent_pos: tuple[int, int], agent_dir: int) -> np.ndarray:
        """The full top-down view, without highlight, resized with nearest neighbours."""
        assert grid.width * TILE == self._canvas.shape[1], "renderer built for another grid size"
        canvas = self._canvas
        ax, ay = int(agent_pos[0]), int(agent_pos[1])
        for j in range(grid.height):
            for i in range(grid.width):
                direction = agent_dir if (i == ax and j == ay) else None
                tile = self._tile(grid.grid[j * grid.width + i], direction)
                canvas[j * TILE : (j + 1) * TILE, i * TILE : (i + 1) * TILE] = tile
        return canvas[self._index]


def matte(img: np.ndarray, background: np.ndarray, mode: Matting = "pixel") -> np.ndarray:
    """Replace the black background of `img` (H, W, 3) by `background` (H, W, 3), in place.

    `pixel`: pixels black in all three channels. `channel`: every zero channel, the official
    code's quirk (`obs == (0, 0, 0)` per channel), so red, green and blue objects take video
    values in their zero channels and flicker with the video (spec §4, "matting quirk").
    """
    assert img.shape == background.shape, (img.shape, background.shape)
    if mode == "channel":
        mask = img == 0
    else:
        mask = np.broadcast_to((img == 0).all(axis=-1, keepdims=True), img.shape)
    np.copyto(img, background, where=mask)
    return img
