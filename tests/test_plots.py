"""ppgen.plots.save_curve_comparison: one line per run, gaps where an epoch measured nothing."""

from __future__ import annotations

import math

import matplotlib.image
import pytest

from ppgen.plots import save_curve_comparison


def test_curves_are_drawn_with_gaps_and_an_empty_set_is_refused(tmp_path):
    path = save_curve_comparison(
        {"a": [800.0, 200.0, None, 40.0], "b": [math.nan, 300.0, 90.0]},
        tmp_path / "sub" / "fid.png",
        "validation FID",
        log_y=True,
    )
    picture = matplotlib.image.imread(path)
    assert picture.ndim == 3 and (picture[..., :3] < 0.5).any()  # something dark was drawn
    with pytest.raises(ValueError, match="no curve has a finite value"):
        save_curve_comparison({"a": [None, math.nan]}, tmp_path / "empty.png", "FID")
    assert not (tmp_path / "empty.png").exists()
    with pytest.raises(ValueError, match="log_y needs values > 0"):
        save_curve_comparison({"a": [10.0, 0.0, 3.0]}, tmp_path / "log.png", "FID", log_y=True)
    assert not (tmp_path / "log.png").exists()
