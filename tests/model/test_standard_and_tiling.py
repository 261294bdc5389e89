"""The score<->level mapping and the reference InternVL tiling."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from model_core.data import IMAGENET_MEAN, IMAGENET_STD, dynamic_preprocess, image_to_pixels, num_tiles, tile_grid
from model_core.standard import (
    DIMENSIONS,
    GROUP_BY_KEY,
    GROUPS,
    LEVELS,
    OVERALL,
    ScoreError,
    grouped,
    level_to_score,
    overall_answer,
    score_to_level,
    validate_expert_scores,
)


@pytest.mark.parametrize("score,level", [(0.0, "bad"), (0.1999, "bad"), (0.2, "poor"), (0.4, "fair"),
                                         (0.5999, "fair"), (0.6, "good"), (0.8, "excellent"), (1.0, "excellent")])
def test_score_maps_to_level_band(score, level):
    assert score_to_level(score) == level


def test_level_maps_back_to_band_centre_and_round_trips():
    for level in LEVELS:
        assert score_to_level(level_to_score(level)) == level
    assert level_to_score("fair") == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [1.2, -0.1, float("nan"), "0.5", True])
def test_invalid_scores_are_rejected(bad):
    with pytest.raises(ScoreError):
        score_to_level(bad)


def test_expert_scores_need_twelve_values():
    with pytest.raises(ScoreError, match="12 values"):
        validate_expert_scores([0.5] * 11)


def test_every_dimension_has_a_known_group_and_its_own_definition():
    assert all(d.group in GROUP_BY_KEY for d in DIMENSIONS)
    definitions = [d.definition for d in DIMENSIONS]
    assert all(10 <= len(text) <= 140 for text in definitions) and len(set(definitions)) == len(DIMENSIONS)
    # grouping keeps the standard's order: face, body, overall, each group's members consecutive
    parts = grouped(DIMENSIONS)
    assert [g.key for g, _ in parts] == [g.key for g in GROUPS] == ["face", "body", "overall"]
    assert [d for _, members in parts for d in members] == list(DIMENSIONS)
    assert grouped([OVERALL]) == [(GROUP_BY_KEY["overall"], [OVERALL])]  # overall mode: one group, one control


def test_overall_answer_has_no_full_stop():
    assert overall_answer(0.65) == "The aesthetics of the human image is good"


@pytest.mark.parametrize("size,max_tiles,grid,tiles", [
    ((448, 448), 12, (1, 1), 1),  # square: one tile, no thumbnail
    ((896, 448), 12, (2, 1), 3),  # 2:1 -> two tiles + thumbnail
    ((1000, 300), 12, (3, 1), 4),  # 3.33: (3,1) and (6,2) tie; the image is too small for (6,2)
    ((4000, 3000), 12, (4, 3), 13),  # 4:3 large -> 12 tiles + thumbnail
    ((4000, 3000), 1, (1, 1), 1),  # max_tiles 1: a single resized tile
    ((300, 900), 6, (1, 3), 4),  # portrait
])
def test_tiling_follows_reference_grid(size, max_tiles, grid, tiles):
    assert tile_grid(*size, max_tiles=max_tiles, tile_size=448) == grid
    assert num_tiles(*size, max_tiles=max_tiles, tile_size=448) == tiles


def test_tie_prefers_larger_grid_when_image_has_the_pixels():
    # 2:1 image: (2,1) and (4,2) tie on aspect ratio; a big image takes the larger grid, as in the reference.
    assert tile_grid(3000, 1500, max_tiles=12, tile_size=448) == (4, 2)
    assert tile_grid(500, 250, max_tiles=12, tile_size=448) == (2, 1)


def test_tiles_are_crops_of_the_resized_image_plus_thumbnail():
    image = Image.new("RGB", (128, 64))
    image.paste((255, 0, 0), (0, 0, 64, 64))  # left half red, right half blue
    image.paste((0, 0, 255), (64, 0, 128, 64))
    tiles = dynamic_preprocess(image, max_tiles=4, tile_size=32)
    assert len(tiles) == 3 and all(t.size == (32, 32) for t in tiles)  # (2,1) grid + thumbnail
    assert tiles[0].getpixel((16, 16)) == (255, 0, 0)
    assert tiles[1].getpixel((16, 16)) == (0, 0, 255)


def test_pixels_are_imagenet_normalised():
    pixels = image_to_pixels(Image.new("RGB", (40, 40), (255, 255, 255)), max_tiles=1, tile_size=32)
    assert pixels.shape == (1, 3, 32, 32)
    expected = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    torch.testing.assert_close(pixels[0, :, 5, 5], expected)
