# SPDX-License-Identifier: MIT
"""Lesion grouping, outline rasterising and crop resampling against naive reference versions."""

from __future__ import annotations

import numpy as np
import pytest

from ppi_cli.data.lidc.lesions import (
    boxes_overlap,
    build_lesion,
    crop_grid,
    group_lesions,
    rasterize_polygon,
    resample_image,
    resample_mask,
)
from ppi_cli.data.lidc.reader_xml import Annotation, Roi


def _inside_naive(py: float, px: float, poly: np.ndarray) -> bool:
    """Point in polygon by the textbook crossing test, one point at a time."""
    inside = False
    n = len(poly)
    for i in range(n):
        (ya, xa), (yb, xb) = poly[i], poly[(i + 1) % n]
        if (ya <= py < yb) or (yb <= py < ya):
            if px < xa + (py - ya) * (xb - xa) / (yb - ya):
                inside = not inside
    return inside


def _on_edge_naive(py: float, px: float, poly: np.ndarray) -> bool:
    n = len(poly)
    for i in range(n):
        (ya, xa), (yb, xb) = poly[i], poly[(i + 1) % n]
        if abs((yb - ya) * (px - xa) - (xb - xa) * (py - ya)) < 1e-9 and min(ya, yb) <= py <= max(ya, yb) \
                and min(xa, xb) <= px <= max(xa, xb):
            return True
    return False


def _raster_naive(poly: np.ndarray, origin, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    for r in range(shape[0]):
        for c in range(shape[1]):
            y, x = r + origin[0], c + origin[1]
            out[r, c] = _inside_naive(y, x, poly) or _on_edge_naive(y, x, poly)
    for y, x in np.rint(poly).astype(int):
        if 0 <= y - origin[0] < shape[0] and 0 <= x - origin[1] < shape[1]:
            out[y - origin[0], x - origin[1]] = True
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rasterize_matches_naive_point_in_polygon(seed):
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
    radii = rng.uniform(3, 9, 9)
    poly = np.stack([12 + radii * np.sin(angles), 13 + radii * np.cos(angles)], axis=1)  # (9, 2) star-shaped
    if seed == 2:
        poly = np.rint(poly)  # integer vertices put pixel centres exactly on edges
    got = rasterize_polygon(poly, (2, 3), (22, 21))
    assert np.array_equal(got, _raster_naive(poly, (2, 3), (22, 21)))
    assert got.sum() > 20


def test_rasterize_square_and_single_point():
    square = np.array([[2, 2], [2, 6], [6, 6], [6, 2]], float)
    mask = rasterize_polygon(square, (0, 0), (9, 9))
    expected = np.zeros((9, 9), bool)
    expected[2:7, 2:7] = True  # a closed polygon: interior and all four edges
    assert np.array_equal(mask, expected)
    triangle = rasterize_polygon(np.array([[0.5, 0.5], [0.5, 6.5], [6.5, 0.5]]), (0, 0), (8, 8))
    # Centres with r, c >= 1 and r + c <= 7 (21 pixels, the hypotenuse included) plus the three vertex pixels.
    assert triangle.sum() == 21 + 3 and triangle[1, 1] and triangle[0, 0] and not triangle[6, 6]
    dot = rasterize_polygon(np.array([[4.0, 5.0]]), (0, 0), (9, 9))
    assert dot.sum() == 1 and dot[4, 5]


def _ann(reader, order, box_rc, z_values, inclusion=True):
    r0, r1, c0, c1 = box_rc
    square = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)
    rois = tuple(Roi(z, "", inclusion, square) for z in z_values)
    return Annotation(reader, f"n{order}", rois, order)


def test_boxes_overlap_counts_touching_edges():
    assert boxes_overlap((0, 2, 0, 2, 0, 1), (2, 3, 2, 3, 1, 2))
    assert not boxes_overlap((0, 2, 0, 2, 0, 1), (2, 3, 2, 3, 1.5, 2))


def test_group_lesions_is_connected_components_of_box_overlap():
    rng = np.random.default_rng(3)
    anns = []
    for order in range(14):
        r, c, z = rng.integers(0, 40, 3)
        anns.append(_ann(order % 4, order, (r, r + rng.integers(1, 6), c, c + rng.integers(1, 6)), [z, z + 2]))
    groups = group_lesions(anns)
    # Naive reference: repeatedly merge sets that hold an overlapping pair.
    sets = [{a.order} for a in anns]
    merged = True
    while merged:
        merged = False
        for i in range(len(sets)):
            for j in range(i + 1, len(sets)):
                if any(boxes_overlap(anns[a].bbox(), anns[b].bbox()) for a in sets[i] for b in sets[j]):
                    sets[i] |= sets.pop(j)
                    merged = True
                    break
            if merged:
                break
    assert sorted(sorted(a.order for a in g) for g in groups) == sorted(sorted(s) for s in sets)
    assert sum(len(g) for g in groups) == len(anns)
    starts = [min(a.bbox()[4] for a in g) for g in groups]
    assert starts == sorted(starts)  # lesions ordered by their first slice


def test_build_lesion_slots_holes_and_centroid():
    # Reader 7 outlines slices 0-1, reader 3 only slice 1 with a hole; slots follow source order.
    a = _ann(7, 0, (10, 20, 10, 20), [0.0, 1.0])
    hole = Roi(1.0, "", False, np.array([[14, 14], [14, 16], [16, 16], [16, 14]], float))
    b = Annotation(3, "x", (Roi(1.0, "", True, a.rois[0].points), hole), 1)
    lesion = build_lesion(0, [a, b], {0: [0, 1], 1: [1, 1]}, (64, 64))
    assert lesion.n_annotators == 2
    assert lesion.readers == {0: (0,), 1: (0, 1)}
    m1 = lesion.masks[1]
    r0, c0 = lesion.window_origin
    assert m1[0, 15 - r0, 15 - c0] and not m1[1, 15 - r0, 15 - c0]  # the hole is cut from reader 3 only
    assert not lesion.masks[0][1].any()  # reader 3 drew nothing on slice 0
    assert lesion.centre == pytest.approx((15.0, 15.0))  # symmetric shapes: the centroid is the square's centre


def test_crop_grid_centres_the_lesion_and_scales_spacing():
    rows, cols = crop_grid((100.0, 50.0), (0.8, 0.5), 0.5, 6)
    assert rows.mean() == pytest.approx(100.0) and cols.mean() == pytest.approx(50.0)
    assert np.diff(rows) == pytest.approx(np.full(5, 0.5 / 0.8))  # 0.5 mm steps in 0.8 mm pixels
    assert np.diff(cols) == pytest.approx(np.ones(5))


def test_resample_image_matches_scipy_bilinear_and_fills_outside(rng):
    from scipy.ndimage import map_coordinates

    image = rng.normal(0, 100, (30, 40))
    rows, cols = crop_grid((12.3, 20.7), (0.7, 0.7), 0.5, 16)
    got = resample_image(image, rows, cols)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    want = map_coordinates(image, [rr, cc], order=1)
    assert np.allclose(got, want)
    rows_out = np.array([-3.0, 5.0])
    edge = resample_image(image, rows_out, np.array([1.0]), fill=-1024)
    assert edge[0, 0] == -1024 and edge[1, 0] == pytest.approx(image[5, 1])


def test_resample_mask_nearest_and_outside_window():
    mask = np.zeros((1, 4, 4), bool)
    mask[0, 1, 2] = True
    out = resample_mask(mask, (10, 20), np.array([10.4, 10.6, 30.0]), np.array([21.4, 22.4, 22.6]))
    # Rows round to 10, 11 and 30 (outside the window); columns to 21, 22, 23: only (11, 22) is set.
    assert out.dtype == np.uint8 and out.shape == (1, 3, 3)
    assert out[0].tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
