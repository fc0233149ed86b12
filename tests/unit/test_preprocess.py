"""Tests for :mod:`edgevcf.data.preprocess`: the spec, its validation and the numpy pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgevcf.data.preprocess import (
    IMAGENET_MEAN_GREY,
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_GREY,
    IMAGENET_STD_RGB,
    Preprocess,
    clahe,
    pad_to_square,
    percentile_normalise,
    resize_keep_aspect,
)
from edgevcf.errors import ConfigError, DataError

RESAMPLES = ["bilinear", "bicubic", "lanczos", "box"]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _unnormalise(out: np.ndarray, spec: Preprocess) -> np.ndarray:
    """Undo mean/std, giving the [0, 1] image the network input was made from (per channel)."""
    mean = np.asarray(spec.mean, dtype=np.float64)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float64)[:, None, None]
    return out.astype(np.float64) * std + mean


# ---------------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    "spec",
    [
        Preprocess(),
        Preprocess.for_channels(1),
        Preprocess.for_channels(
            1, input_size=64, clahe=True, clahe_clip_limit=3.5, clahe_tiles=4, resample="lanczos"
        ),
        Preprocess(clip_low_pct=0.0, clip_high_pct=100.0, mean=(0.1, 0.2, 0.3), std=(1, 2, 3)),
    ],
    ids=["default", "grey", "grey-clahe", "custom-stats"],
)
def test_json_round_trip_is_exact(spec: Preprocess) -> None:
    text = spec.to_json()
    again = Preprocess.from_json(text)
    assert again == spec
    assert hash(again) == hash(spec)
    assert again.to_json() == text  # canonical: stable bytes for fingerprints
    assert Preprocess.from_dict(json.loads(text)) == spec
    assert isinstance(again.mean, tuple)
    assert isinstance(again.std, tuple)


def test_to_dict_is_plain_json() -> None:
    d = Preprocess().to_dict()
    assert d["mean"] == list(IMAGENET_MEAN_RGB)
    assert d["std"] == list(IMAGENET_STD_RGB)
    assert json.loads(json.dumps(d)) == d


def test_for_channels_picks_matching_statistics() -> None:
    grey = Preprocess.for_channels(1)
    assert (grey.channels, grey.mean, grey.std) == (1, IMAGENET_MEAN_GREY, IMAGENET_STD_GREY)
    rgb = Preprocess.for_channels(3, input_size=96)
    assert (rgb.channels, rgb.mean, rgb.std, rgb.input_size) == (
        3,
        IMAGENET_MEAN_RGB,
        IMAGENET_STD_RGB,
        96,
    )


def test_unknown_key_is_refused_naming_valid_keys() -> None:
    data = {**Preprocess().to_dict(), "input_sise": 256}
    with pytest.raises(ConfigError, match="input_sise") as info:
        Preprocess.from_dict(data)
    hint = info.value.hint or ""
    for key in ("input_size", "channels", "clip_low_pct", "clahe", "resample", "mean", "std"):
        assert key in hint


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"input_size": 8}, "input_size"),
        ({"input_size": 5000}, "input_size"),
        ({"channels": 2, "mean": (0.5, 0.5), "std": (0.2, 0.2)}, "channels"),
        ({"clip_low_pct": 60.0, "clip_high_pct": 40.0}, "clip_low_pct"),
        ({"clip_low_pct": -1.0}, "clip_low_pct"),
        ({"clip_high_pct": 100.5}, "clip_high_pct"),
        ({"clahe_clip_limit": 0.5}, "clahe_clip_limit"),
        ({"clahe_tiles": 0}, "clahe_tiles"),
        ({"clahe_tiles": 65}, "clahe_tiles"),
        ({"resample": "nearest"}, "resample"),
        ({"mean": (0.5,)}, "mean and std"),
        ({"std": (0.2, 0.2)}, "mean and std"),
        ({"std": (0.2, 0.0, 0.2)}, "std values must be positive"),
        ({"std": (0.2, -1.0, 0.2)}, "std values must be positive"),
        ({"version": 99}, "version"),
        ({"version": 0}, "version"),
    ],
)
def test_invalid_values_raise_config_error(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Preprocess(**kwargs)  # type: ignore[arg-type]
    # ... and the same through JSON, as a bundle would load it.
    with pytest.raises(ConfigError, match=fragment):
        Preprocess.from_json(json.dumps({**Preprocess().to_dict(), **kwargs}))


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        Preprocess(input_size=1, channels=5)
    assert "input_size" in str(info.value)
    assert "channels" in str(info.value)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"a string"', "null"])
def test_bad_json_raises_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        Preprocess.from_json(text)


@pytest.mark.parametrize(
    "overrides",
    [{"input_size": "224"}, {"mean": None}, {"mean": "abc"}],
    ids=["input_size-str", "mean-null", "mean-str"],
)
def test_wrongly_typed_json_values_raise_config_error(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Preprocess.from_json(json.dumps({**Preprocess().to_dict(), **overrides}))


@pytest.mark.parametrize(
    "overrides",
    [
        {"std": (math.nan, 0.2, 0.2)},
        {"mean": (math.nan, 0.4, 0.4)},
        {"std": (math.inf, 0.2, 0.2)},
        {"clahe_clip_limit": math.nan},
        {"input_size": 224.5},
        {"clahe": "false"},
    ],
    ids=["std-nan", "mean-nan", "std-inf", "clip-limit-nan", "input_size-float", "clahe-str"],
)
def test_non_finite_and_mistyped_values_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Preprocess(**overrides)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- apply: shape & layout


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("shape", [(300, 250), (97, 301), (64, 64), (5, 3)])
def test_output_shape_and_dtype(channels: int, shape: tuple[int, int]) -> None:
    spec = Preprocess.for_channels(channels, input_size=64)
    out = spec.apply(_rng().random(shape))
    assert out.shape == (channels, 64, 64) == spec.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


def test_three_channels_replicate_the_grey_image() -> None:
    spec = Preprocess(input_size=64)
    x = _unnormalise(spec.apply(_rng().random((80, 70))), spec)
    np.testing.assert_allclose(x[1], x[0], atol=1e-6)
    np.testing.assert_allclose(x[2], x[0], atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_portrait_is_padded_left_and_right_with_zero(channels: int) -> None:
    # 200x100 -> 64x32 content, centred: 16 pad columns each side.
    image = np.ones((200, 100), dtype=np.float32)
    image[0, 0] = 0.0  # one dark pixel so the content is not constant (which maps to 0)
    spec = Preprocess.for_channels(channels, input_size=64, clip_low_pct=0.0)
    out = spec.apply(image)
    for c in range(channels):
        pad = np.float32((0.0 - spec.mean[c]) / spec.std[c])
        np.testing.assert_allclose(out[c, :, :16], pad, rtol=1e-6)
        np.testing.assert_allclose(out[c, :, 48:], pad, rtol=1e-6)
    x = _unnormalise(out, spec)
    np.testing.assert_allclose(x[:, :, :16], 0.0, atol=1e-6)
    np.testing.assert_allclose(x[:, :, 48:], 0.0, atol=1e-6)
    content = x[:, :, 16:48]
    assert content.mean() > 0.95
    assert (content[:, 1:, 0] > 0.5).all()  # row 0 holds the dark pixel
    assert (content[:, :, -1] > 0.5).all()


def test_landscape_is_padded_top_and_bottom() -> None:
    image = _rng().uniform(1.0, 2.0, size=(100, 200))
    spec = Preprocess.for_channels(1, input_size=64, clip_low_pct=0.0, clip_high_pct=100.0)
    x = _unnormalise(spec.apply(image), spec)[0]
    np.testing.assert_allclose(x[:16], 0.0, atol=1e-6)
    np.testing.assert_allclose(x[48:], 0.0, atol=1e-6)
    assert (x[16:48].max(axis=1) > 0).all()


@pytest.mark.parametrize("shape", [(200, 90), (91, 200), (301, 150)])
def test_content_is_centred_within_one_pixel(shape: tuple[int, int]) -> None:
    image = _rng(3).uniform(1.0, 2.0, size=shape)
    spec = Preprocess.for_channels(1, input_size=64, clip_low_pct=0.0, clip_high_pct=100.0)
    x = _unnormalise(spec.apply(image), spec)[0]
    h, w = resize_keep_aspect(image.astype(np.float32), 64).shape
    assert max(h, w) == 64
    assert abs(h / w - shape[0] / shape[1]) < 0.05  # aspect kept (up to rounding)
    rows = np.flatnonzero(np.abs(x).sum(axis=1) > 1e-4)
    cols = np.flatnonzero(np.abs(x).sum(axis=0) > 1e-4)
    assert (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == (h, w)
    top, bottom = rows[0], 64 - 1 - rows[-1]
    left, right = cols[0], 64 - 1 - cols[-1]
    assert abs(top - bottom) <= 1
    assert abs(left - right) <= 1


def test_pad_to_square_places_content_in_the_middle() -> None:
    img = np.full((3, 5), 7.0, dtype=np.float32)
    out = pad_to_square(img, 9, value=-1.0)
    assert out.shape == (9, 9)
    assert out.dtype == np.float32
    assert (out[3:6, 2:7] == 7.0).all()
    assert (out == 7.0).sum() == 15
    assert (out == -1.0).sum() == 81 - 15


# ------------------------------------------------------------------- apply: intensity handling


@pytest.mark.parametrize(("low", "high"), [(0.5, 99.5), (0.0, 100.0), (2.0, 98.0)])
def test_percentile_normalisation_before_mean_std(low: float, high: float) -> None:
    # An image already at the input size is not resampled, so the expected values are exact.
    image = _rng(1).normal(1000.0, 200.0, size=(64, 64)).astype(np.float32)
    spec = Preprocess(input_size=64, clip_low_pct=low, clip_high_pct=high)
    x = _unnormalise(spec.apply(image), spec)
    lo, hi = np.percentile(image, [low, high])
    expected = np.clip((image.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
    for c in range(3):
        np.testing.assert_allclose(x[c], expected, atol=1e-5)
    assert x.min() == pytest.approx(0.0, abs=1e-6)
    assert x.max() == pytest.approx(1.0, abs=1e-6)


def test_percentiles_are_robust_to_a_few_hot_pixels() -> None:
    image = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (64, 1))
    image[0, :5] = 1e6  # markers / saturated pixels: 5 of 4,096, below the 0.5 % tail
    x = _unnormalise(Preprocess(input_size=64).apply(image), Preprocess(input_size=64))[0]
    assert 0.4 < float(np.median(x)) < 0.6  # min-max scaling would squash it to ~0


def test_content_lies_in_unit_range_after_resize() -> None:
    spec = Preprocess(input_size=64)
    x = _unnormalise(spec.apply(_rng(2).gamma(2.0, 500.0, size=(317, 251))), spec)
    assert x.min() >= -1e-6
    assert x.max() <= 1 + 1e-6


@pytest.mark.parametrize("clahe_on", [False, True])
@pytest.mark.parametrize("value", [0.0, 1234.5, -7.0])
def test_constant_image_gives_zeros_not_nan(clahe_on: bool, value: float) -> None:
    spec = Preprocess(input_size=32, clahe=clahe_on)
    out = spec.apply(np.full((50, 40), value))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(_unnormalise(out, spec), 0.0, atol=1e-6)
    assert (percentile_normalise(np.full((4, 4), value, np.float32), 1, 99) == 0).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_raises_data_error(bad: float) -> None:
    image = np.ones((20, 20))
    image[3, 4] = bad
    with pytest.raises(DataError, match="NaN or infinite"):
        Preprocess(input_size=16).apply(image)


@pytest.mark.parametrize("shape", [(), (10,), (10, 10, 3), (1, 10, 10), (0, 10), (10, 0)], ids=str)
def test_not_a_2d_image_raises_data_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(DataError, match="2-D"):
        Preprocess(input_size=16).apply(np.ones(shape, dtype=np.float32))


@pytest.mark.parametrize("clahe_on", [False, True])
def test_apply_is_deterministic_and_does_not_touch_input(clahe_on: bool) -> None:
    spec = Preprocess(input_size=64, clahe=clahe_on)
    image = _rng(4).random((311, 257)).astype(np.float32)
    before = image.copy()
    a, b = spec.apply(image), spec.apply(image)
    assert a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(image, before)
    same_size = _rng(5).random((64, 64)).astype(np.float32)
    keep = same_size.copy()
    spec.apply(same_size)  # no-resize path: must not normalise in place
    np.testing.assert_array_equal(same_size, keep)


@pytest.mark.parametrize("clahe_on", [False, True])
def test_integer_and_float_inputs_agree(clahe_on: bool) -> None:
    spec = Preprocess(input_size=64, clahe=clahe_on)
    u16 = _rng(6).integers(0, 4096, size=(230, 190), dtype=np.uint16)
    ref = spec.apply(u16)
    for dtype in (np.float32, np.float64, np.int32, np.int64):
        np.testing.assert_array_equal(spec.apply(u16.astype(dtype)), ref, err_msg=str(dtype))
    # Big-endian DICOM pixel data too.
    np.testing.assert_array_equal(spec.apply(u16.astype(">u2")), ref)


def test_list_input_is_accepted() -> None:
    image = _rng(7).random((20, 30))
    spec = Preprocess(input_size=32)
    np.testing.assert_array_equal(spec.apply(image.tolist()), spec.apply(image))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- CLAHE


def _global_equalisation(image: np.ndarray, bins: int = 256) -> np.ndarray:
    """Textbook histogram equalisation by ranks: (cdf(v) - cdf_min) / (N - cdf_min)."""
    q = np.clip(np.floor(image.astype(np.float64) * (bins - 1) + 0.5), 0, bins - 1)
    ranked = np.sort(q.ravel())
    at_or_below = np.searchsorted(ranked, q, side="right")  # cdf(q)
    lowest = np.searchsorted(ranked, ranked[0], side="right")  # cdf(min level)
    return (at_or_below - lowest) / (q.size - lowest)


def _clipped_equalisation_lut(tile: np.ndarray, clip_limit: float, bins: int = 256) -> np.ndarray:
    """Reference CLAHE mapping of one tile: clip, redistribute the excess evenly, cumulate."""
    q = np.clip(np.floor(tile.astype(np.float64) * (bins - 1) + 0.5), 0, bins - 1).astype(int)
    hist = np.bincount(q.ravel(), minlength=bins).astype(np.float64)
    limit = max(1.0, clip_limit * tile.size / bins)
    excess = np.sum(np.maximum(hist - limit, 0.0))
    hist = np.minimum(hist, limit) + excess / bins
    cdf = np.cumsum(hist)
    return (cdf - cdf[0]) / (cdf[-1] - cdf[0])


def _low_contrast_pattern(size: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    return (0.45 + 0.05 * np.sin(12 * xx) * np.cos(9 * yy) + 0.03 * xx).astype(np.float32)


@pytest.mark.parametrize(("clip_limit", "tiles"), [(1.0, 1), (2.0, 8), (4.0, 3), (40.0, 16)])
def test_clahe_output_in_unit_range(clip_limit: float, tiles: int) -> None:
    image = _rng(8).random((97, 131)).astype(np.float32)
    out = clahe(image, clip_limit=clip_limit, tiles=tiles)
    assert out.shape == image.shape
    assert out.dtype == np.float32
    assert out.min() >= 0.0
    assert out.max() <= 1.0


def test_clahe_increases_local_contrast() -> None:
    image = _low_contrast_pattern()
    out = clahe(image, clip_limit=2.0, tiles=4)
    for ty in range(4):
        for tx in range(4):
            block = (slice(32 * ty, 32 * ty + 32), slice(32 * tx, 32 * tx + 32))
            assert out[block].std() > 2 * image[block].std()


def test_clahe_single_tile_is_monotonic() -> None:
    image = _rng(9).random((60, 80)).astype(np.float32)
    out = clahe(image, clip_limit=2.0, tiles=1)
    order = np.argsort(image, axis=None, kind="stable")
    assert (np.diff(out.ravel()[order]) >= 0).all()


def test_clahe_single_tile_without_clipping_is_global_equalisation() -> None:
    image = _rng(10).beta(2.0, 5.0, size=(70, 90)).astype(np.float32)
    # Some pixels at exactly 0, as percentile clipping always leaves: the darkest level is 0.
    image[::7, ::9] = 0.0
    out = clahe(image, clip_limit=1e9, tiles=1)
    np.testing.assert_allclose(out, _global_equalisation(image), atol=1e-6)


def test_clahe_at_tile_centres_uses_that_tiles_clipped_mapping() -> None:
    # 100x100 in 4x4 tiles of 25: pixel 12 (+25k) is exactly a tile centre, no blending there.
    image = _rng(11).beta(3.0, 3.0, size=(100, 100)).astype(np.float32)
    out = clahe(image, clip_limit=2.0, tiles=4)
    for ty in range(4):
        for tx in range(4):
            tile = image[25 * ty : 25 * ty + 25, 25 * tx : 25 * tx + 25]
            lut = _clipped_equalisation_lut(tile, clip_limit=2.0)
            cy, cx = 25 * ty + 12, 25 * tx + 12
            level = int(np.floor(image[cy, cx] * 255 + 0.5))
            assert out[cy, cx] == pytest.approx(lut[level], abs=1e-6)


def _seam_and_interior_kinks(image: np.ndarray, tile: int) -> tuple[float, float]:
    """Largest kink (jump in the horizontal step) across tile borders, and elsewhere."""
    step = np.diff(image.astype(np.float64), axis=1)
    kink = np.abs(step[:, 1:-1] - 0.5 * (step[:, :-2] + step[:, 2:]))  # kink[:, k] ~ step k+1
    at_border = np.zeros(kink.shape[1], dtype=bool)
    at_border[np.arange(tile - 2, kink.shape[1], tile)] = True  # step tile-1 -> tile, ...
    return float(kink[:, at_border].max()), float(kink[:, ~at_border].max())


@pytest.mark.parametrize(("size", "tiles"), [(128, 4), (160, 8), (96, 3)])
def test_clahe_has_no_tile_seams(size: int, tiles: int) -> None:
    image = _low_contrast_pattern(size)
    tile = size // tiles
    seam, interior = _seam_and_interior_kinks(clahe(image, clip_limit=3.0, tiles=tiles), tile)
    assert seam <= interior
    # The check has teeth: equalising each tile on its own does leave seams.
    naive = np.block(
        [
            [clahe(image[r : r + tile, c : c + tile], 3.0, 1) for c in range(0, size, tile)]
            for r in range(0, size, tile)
        ]
    )
    naive_seam, naive_interior = _seam_and_interior_kinks(naive, tile)
    assert naive_seam > naive_interior


def test_clahe_through_the_spec_changes_the_output() -> None:
    image = _low_contrast_pattern(200)
    plain = Preprocess(input_size=64).apply(image)
    with_clahe = Preprocess(input_size=64, clahe=True).apply(image)
    assert not np.allclose(plain, with_clahe)


# -------------------------------------------------------------------------------------- resize


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((2867, 2333), (224, 182)),  # full-resolution synthetic lateral film
        ((2333, 2867), (182, 224)),
        ((720, 580), (224, 180)),  # --fast synthetic film
        ((224, 224), (224, 224)),
        ((100, 50), (224, 112)),  # upsampling keeps the aspect too
        ((5000, 3), (224, 1)),  # never a zero-width image
    ],
)
def test_resize_keep_aspect_sizes(shape: tuple[int, int], expected: tuple[int, int]) -> None:
    out = resize_keep_aspect(np.zeros(shape, dtype=np.float32), 224)
    assert out.shape == expected
    assert out.dtype == np.float32


def test_resize_to_same_size_returns_a_copy() -> None:
    image = _rng().random((32, 20)).astype(np.float32)
    out = resize_keep_aspect(image, 32)
    np.testing.assert_array_equal(out, image)
    assert not np.shares_memory(out, image)


@pytest.mark.parametrize("resample", RESAMPLES)
def test_resize_is_antialiased(resample: str) -> None:
    # A 1-pixel checkerboard shrunk 10x must become flat grey; plain decimation gives 0 or 1.
    yy, xx = np.mgrid[0:1000, 0:1000]
    board = ((yy + xx) % 2).astype(np.float32)
    out = resize_keep_aspect(board, 100, resample)
    assert out.shape == (100, 100)
    assert out.std() < 0.05
    assert out.mean() == pytest.approx(0.5, abs=0.05)
    assert board[::10, ::10].std() == 0.0  # the aliasing the filter avoids: all one colour
    assert board[::10, ::10].mean() in (0.0, 1.0)


@pytest.mark.parametrize("resample", RESAMPLES)
def test_every_resample_filter_works_through_the_spec(resample: str) -> None:
    spec = Preprocess(input_size=48, resample=resample)  # type: ignore[arg-type]
    out = spec.apply(_rng(12).random((200, 150)))
    assert out.shape == (3, 48, 48)
    assert np.isfinite(out).all()


# ------------------------------------------------------------------------------------- batches


def test_apply_batch_stacks_apply() -> None:
    spec = Preprocess.for_channels(1, input_size=32)
    images = [_rng(i).random(shape) for i, shape in enumerate([(50, 40), (40, 50), (32, 32)])]
    batch = spec.apply_batch(images)
    assert batch.shape == (3, 1, 32, 32)
    assert batch.dtype == np.float32
    for i, image in enumerate(images):
        np.testing.assert_array_equal(batch[i], spec.apply(image))


@pytest.mark.parametrize("channels", [1, 3])
def test_apply_batch_of_nothing(channels: int) -> None:
    spec = Preprocess.for_channels(channels, input_size=32)
    batch = spec.apply_batch([])
    assert batch.shape == (0, channels, 32, 32)
    assert batch.dtype == np.float32


def test_apply_batch_reports_the_bad_image() -> None:
    spec = Preprocess(input_size=32)
    with pytest.raises(DataError):
        spec.apply_batch([np.ones((10, 10)), np.full((10, 10), np.nan)])


# ----------------------------------------------------------------------- crop to the exposed field


def test_exposed_field_finds_the_collimated_field_of_synthetic_films(synth_fast_dataset) -> None:
    import json

    from edgevcf.data.io import read_image
    from edgevcf.data.preprocess import exposed_field

    for line in synth_fast_dataset.annotations.read_text().splitlines():
        ann = json.loads(line)
        img, _ = read_image(synth_fast_dataset.out_dir / ann["path"])
        r0, r1, c0, c1 = exposed_field(img)
        fr0, fc0, fr1, fc1 = ann["field_box"]
        # Inside the field, by at most a few pixels of margin.
        assert 0 <= r0 - fr0 <= 6 and 0 <= fr1 - r1 <= 6, ann["path"]
        assert 0 <= c0 - fc0 <= 6 and 0 <= fc1 - c1 <= 6, ann["path"]


def test_exposed_field_leaves_unshuttered_and_flat_images_whole() -> None:
    from edgevcf.data.preprocess import exposed_field

    rng = np.random.default_rng(0)
    busy = rng.random((300, 200)).astype(np.float32)
    assert exposed_field(busy) == (0, 300, 0, 200)
    assert exposed_field(np.ones((300, 200), np.float32)) == (0, 300, 0, 200)
    tiny_field = np.ones((300, 200), np.float32)
    tiny_field[140:160, 90:110] = rng.random((20, 20))  # under a quarter: not trusted
    assert exposed_field(tiny_field) == (0, 300, 0, 200)


def test_crop_to_field_is_part_of_the_spec_and_changes_only_shuttered_images() -> None:
    rng = np.random.default_rng(1)
    img = np.full((400, 300), 0.98, np.float32)
    img[50:350, 40:260] = rng.random((300, 220))
    cropped = Preprocess(crop_to_field=True, input_size=64).to_unit(img)
    plain = Preprocess(input_size=64).to_unit(img)
    assert not np.array_equal(cropped, plain)
    spec = Preprocess(crop_to_field=True)
    assert Preprocess.from_json(spec.to_json()) == spec
    with pytest.raises(ConfigError, match="crop_to_field"):
        Preprocess(crop_to_field="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------ version 2: reduce first
def test_versions_of_the_spec() -> None:
    """New specs are version 2; a spec written without a version predates it (version 1)."""
    assert Preprocess().version == 2
    old = {k: v for k, v in Preprocess().to_dict().items() if k != "version"}
    assert Preprocess.from_dict(old).version == 1
    assert Preprocess.from_dict({**old, "version": 1}).version == 1


def _film(tmp_path: Path, **attrs: object) -> Path:
    """A full-size 12-bit DX film (a window that clips both ends) and its path."""
    from dicom_files import small_dicom

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:1500, 0:1200]
    px = 2000 + 1500 * np.sin(xx / 90.0) * np.cos(yy / 130.0) + rng.normal(0, 80, xx.shape)
    return small_dicom(tmp_path / "film.dcm", np.clip(px, 0, 4095).astype(np.uint16),
                       WindowCenter="2000", WindowWidth="2400", **attrs)  # fmt: skip


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_version_2_reduces_first_and_the_network_input_barely_moves(
    tmp_path: Path, photometric: str
) -> None:
    """Version 2 box-reduces the stored pixels before the grey-scale pipeline: a 1,500 px film
    for a 160 px input by 3 (9 x fewer pixels through the LUT). The unit image stays close to
    version 1's: they differ only where the window clips (the mean of clipped values is not
    the clip of the mean), by the measure below; the AUC effect is measured in the benchmark."""
    from edgevcf.data.io import read_image

    path = _film(tmp_path, PhotometricInterpretation=photometric)
    v1, v2 = Preprocess(input_size=160, version=1), Preprocess(input_size=160)
    img1, meta1 = v1.read(path)
    img2, meta2 = v2.read(path)
    assert (meta1.reduced_by, meta2.reduced_by) == (1, 3)
    assert img1.shape == (1500, 1200) and img2.shape == (500, 400)
    assert (meta2.rows, meta2.cols) == (1500, 1200)  # the stored size, as the header says
    np.testing.assert_array_equal(img1, read_image(path)[0])  # version 1: as before, exactly
    u1, u2 = v1.to_unit(img1), v2.to_unit(img2)
    assert float(np.abs(u1 - u2).mean()) < 0.01 and float(np.abs(u1 - u2).max()) < 0.2


def test_version_2_on_a_png_is_the_resize_s_own_first_step(tmp_path: Path) -> None:
    """A PNG's grey scale is linear, so reducing first is the same box mean Pillow's resize takes
    first anyway: the network input is version 1's up to float rounding."""
    from PIL import Image

    rng = np.random.default_rng(2)
    px = rng.integers(0, 65535, size=(1500, 1200), dtype=np.uint16)
    Image.fromarray(px).save(tmp_path / "film.png")
    v1, v2 = Preprocess(input_size=160, version=1), Preprocess(input_size=160)
    img2, meta2 = v2.read(tmp_path / "film.png")
    assert meta2.reduced_by == 3 and img2.shape == (500, 400)
    u1, u2 = v1.to_unit(v1.read(tmp_path / "film.png")[0]), v2.to_unit(img2)
    np.testing.assert_allclose(u1, u2, atol=2e-3)


# ------------------------------------------------- version 2: the reduced film looked up by sums
def test_block_sums_give_pillow_s_reduce_bit_for_bit() -> None:
    """The reader's box reduction of integer pixels (exact block sums, then Pillow's rounding of
    the mean) is Pillow's ``Image.reduce`` exactly, partial edge blocks included."""
    from PIL import Image

    from edgevcf.data.io import block_sums, box_reduce

    rng = np.random.default_rng(9)
    cases = [("<u2", (61, 47), 2), ("<u2", (97, 130), 3), ("<i2", (50, 77), 4),
             ("<i2", (64, 48), 8), ("u1", (33, 35), 5), ("<u2", (400, 370), 190)]  # fmt: skip
    for dtype, (h, w), k in cases:
        info = np.iinfo(dtype)
        img = rng.integers(info.min, int(info.max) + 1, (h, w)).astype(dtype)
        pil = Image.fromarray(img.astype(np.float32), mode="F").reduce(k)
        np.testing.assert_array_equal(box_reduce(img, k), np.asarray(pil))
    assert block_sums(img, 190).dtype == np.int64  # 190**2 values of 16 bits: beyond int32


def _lut(n: int, first: int, bits: int, gamma: float) -> object:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [n, first, bits]
    item.LUTData = (((1 << bits) - 1) * (np.arange(n) / (n - 1)) ** gamma).astype("<u2").tobytes()
    item["LUTData"].VR = "OW"
    return item


def _pixels(shape: tuple[int, int], lo: int, hi: int, dtype: str = "<u2") -> np.ndarray:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    px = (lo + hi) / 2 + (hi - lo) / 2.2 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    return np.clip(px + rng.normal(0, (hi - lo) / 40, shape), lo, hi).astype(dtype)


_MONO1 = {"PhotometricInterpretation": "MONOCHROME1"}
_SIGNED = {"PixelRepresentation": 1, "RescaleSlope": "1", "RescaleIntercept": "-1024",
           "WindowCenter": "0", "WindowWidth": "3000"}  # fmt: skip
_FILMS: dict[str, tuple[tuple[int, int], dict[str, object]]] = {
    "mono2-window": ((151, 100), {}),
    "mono1-rescale-window": ((151, 101), {**_MONO1, "RescaleSlope": "0.5",
                                          "RescaleIntercept": "-20", "WindowCenter": "1000"}),
    "linear-exact": ((100, 149), {"WindowCenter": "2000", "WindowWidth": "2400",
                                  "VOILUTFunction": "LINEAR_EXACT"}),
    "sigmoid": ((98, 145), {"VOILUTFunction": "SIGMOID", "WindowWidth": "1500"}),
    "full-range": ((147, 98), {"WindowCenter": "", "WindowWidth": ""}),
    "inverse-shape": ((146, 99), {"PresentationLUTShape": "INVERSE", "RescaleSlope": "0.25",
                                  "RescaleIntercept": "100", "WindowCenter": "600"}),
    "signed-12": ((150, 97), _SIGNED),
    "signed-16-mono1": ((151, 98), {**_SIGNED, **_MONO1, "BitsStored": 16, "HighBit": 15}),
    "high-bits-set": ((149, 100), {}),
    "bright-by-4": ((193, 150), {}),  # 16-bit block sums up to 65,520, and edge blocks beyond
    "modality-lut": ((151, 100), {"ModalityLUTSequence": [_lut(4096, 0, 12, 0.8)]}),
    "voi-lut": ((148, 100), {**_MONO1, "VOILUTSequence": [_lut(2048, 900, 16, 1.3)]}),
    "not-reduced": ((40, 30), {}),
    "32-bit": ((150, 100), {"WindowCenter": "2000000", "WindowWidth": "3000000"}),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(_FILMS))
def test_version_2_lookup_by_block_sums_gives_the_straightforward_input(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read -> to_unit -> prepare of version 2 is bit for bit what the straightforward reader
    gives: Pillow's reduce of the stored values, then the grey-scale pipeline pixel by pixel
    (the reader before the lookup by block sums). Small odd-sized films (partial edge blocks),
    with the lookup forced on at their size."""
    from dicom_files import small_dicom

    from edgevcf.data import io as io_mod
    from edgevcf.data.io import ImageMeta
    from edgevcf.data.preprocess import InputSpec

    shape, attrs = _FILMS[kind]
    signed = kind.startswith("signed")
    px = _pixels(shape, *((-2048, 2047) if signed else (0, 4095)), "<i2" if signed else "<u2")
    if kind == "signed-16-mono1":
        px = _pixels(shape, -30000, 30000, "<i2")
    elif kind == "bright-by-4":
        px = _pixels(shape, 3000, 4095)
        px[:4, :4] = 4095
    elif kind == "high-bits-set":
        px[::7, ::5] |= 0xF000  # outside Bits Stored: ignored
    elif kind == "32-bit":
        px = px.astype("<u4") * 1000
    path = small_dicom(tmp_path / f"{kind}.dcm", px.astype("<u4" if kind == "32-bit" else "<u2"),
                       **attrs)  # fmt: skip
    spec = Preprocess(input_size=16)
    graph = InputSpec((1, 3, 16, 16))

    def network_input() -> tuple[np.ndarray, np.ndarray, ImageMeta]:
        img, meta = spec.read(path)
        return img, graph.prepare(spec.to_unit(img), spec), meta

    monkeypatch.setattr(io_mod, "_LUT_MIN_PIXELS", 0)
    img, x, meta = network_input()
    assert meta.reduced_by == (1 if kind == "not-reduced" else max(shape) // 48)
    with monkeypatch.context() as straight:
        straight.setattr(io_mod, "_table_codes", lambda image, k, shape: None)
        straight.setattr(io_mod, "_sums_exact", lambda image: False)
        img_ref, x_ref, meta_ref = network_input()
    assert meta == meta_ref
    np.testing.assert_array_equal(img, img_ref)
    np.testing.assert_array_equal(x, x_ref)
