"""From points to the issue's comparisons: interpolation along a codec's sweep, bits to reach a quality, wins."""

from __future__ import annotations

import pytest

pytest.importorskip("pytorch_msssim")

from bench import analysis


def point(codec: str, setting, image: str, bpp: float, **metrics) -> dict:
    return {"codec": codec, "setting": setting, "image": image, "bpp": bpp, **metrics}


SWEEP = [
    point("webp", 0, "a", 0.1, ms_ssim=0.80, swd=300.0, psnr=24.0),
    point("webp", 10, "a", 0.2, ms_ssim=0.90, swd=200.0, psnr=27.0),
    point("webp", 50, "a", 0.4, ms_ssim=0.95, swd=100.0, psnr=30.0),
]


def test_value_at_bpp_interpolates_in_log_rate() -> None:
    value, too_low = analysis.value_at_bpp(SWEEP, "swd", (0.1 * 0.2) ** 0.5)
    assert value == pytest.approx(250.0) and not too_low
    assert analysis.value_at_bpp(SWEEP, "swd", 0.05) == (300.0, True)
    assert analysis.value_at_bpp(SWEEP, "swd", 0.8) == (None, False)


def test_bpp_to_reach() -> None:
    assert analysis.bpp_to_reach(SWEEP, "ms_ssim", 0.85) == pytest.approx((0.1 * 0.2) ** 0.5)
    assert analysis.bpp_to_reach(SWEEP, "ms_ssim", 0.5) == 0.1, "reached at its lowest: the lowest rate"
    assert analysis.bpp_to_reach(SWEEP, "ms_ssim", 0.99) is None
    assert analysis.bpp_to_reach(SWEEP, "swd", 150.0) == pytest.approx((0.2 * 0.4) ** 0.5), "lower is better"


def test_compare_counts_per_image() -> None:
    ours = [
        point("ours", "gc-c8", "a", 0.05, ms_ssim=0.85, swd=120.0, psnr=20.0),
        point("ours", "gc-c8", "b", 0.05, ms_ssim=0.85, swd=400.0, psnr=20.0),
    ]
    other = [{**p, "image": "b"} for p in SWEEP]
    result = analysis.compare(ours + SWEEP + other)["gc-c8"]["webp"]
    assert result["images"] == 2
    assert result["cannot_reach"] == {"1x": 2, "2x": 0}
    assert result["bpp_for_our_ms_ssim"] == pytest.approx((0.1 * 0.2) ** 0.5)
    assert result["ratio"] == pytest.approx((0.1 * 0.2) ** 0.5 / 0.05)
    # at 2x our bytes (0.1 bpp) webp's SWD is 300: image a (120) wins, image b (400) loses
    assert result["at_2x"]["swd"] == {"wins": 1, "images": 2}
    assert result["at_1x"]["psnr"] == {"wins": 0, "images": 2}


def test_curves_average_over_images_per_setting() -> None:
    other = [{**p, "image": "b", "ms_ssim": p["ms_ssim"] - 0.1} for p in SWEEP]
    curves = analysis.curves(SWEEP + other + [point("ours", "m2", "a", 0.08), point("ours", "m1", "a", 0.02)])
    assert [e["setting"] for e in curves["webp"]] == [0, 10, 50]
    assert curves["webp"][0]["ms_ssim"] == pytest.approx(0.75) and curves["webp"][0]["images"] == 2
    assert [e["setting"] for e in curves["ours"]] == ["m1", "m2"], "ours sorted by rate"


def test_a_codec_made_at_our_bytes_is_compared_with_the_same_rate_point_on_the_same_image() -> None:
    points = [
        point("ours", "c8", "a", 0.05, bytes=1000, psnr_4=25.0, delta_e_16=3.0),
        point("ours", "c8", "b", 0.05, bytes=1000, psnr_4=22.0, delta_e_16=5.0),
        point("ours", "c4", "a", 0.03, bytes=600, psnr_4=24.0, delta_e_16=4.0),
        point("avif-down", "c8", "a", 0.049, bytes=980, psnr_4=24.0, delta_e_16=3.0),
        point("avif-down", "c8", "b", 0.049, bytes=1100, psnr_4=23.0, delta_e_16=4.0, over_budget=True),
        point("avif-down", "c4", "a", 0.03, bytes=600, psnr_4=25.0, delta_e_16=2.0),
        *SWEEP,
    ]
    result = analysis.at_our_bytes(points)
    c8 = result["c8"]["avif-down"]
    assert c8["images"] == 2 and c8["over_budget"] == 1 and c8["bytes_ratio"] == pytest.approx((0.98 + 1.1) / 2)
    assert c8["measures"]["psnr_4"] == {
        "ours": 23.5,
        "theirs": 23.5,
        "mean_not_worse": True,
        "not_worse": 1,
        "images": 2,
    }
    assert c8["measures"]["delta_e_16"]["not_worse"] == 1, "colour error: lower is better, a tie is not worse"
    assert not c8["measures"]["delta_e_16"]["mean_not_worse"]
    assert result["c4"]["avif-down"]["measures"]["psnr_4"]["not_worse"] == 0
    assert "avif-down" not in analysis.compare(points)["c8"], "it has no sweep to interpolate along"
    assert [e["setting"] for e in analysis.curves(points)["avif-down"]] == ["c4", "c8"], "sorted by rate"
