"""The shipped demo model: loads with no argument, small, and segments the synthetic camera."""

from __future__ import annotations

import segcore
from segcore.data import synthetic
from segcore.evaluation import evaluate
from segcore.models.yolact import DEMO_WEIGHTS
from segcore.training import synthetic_samples


def test_weights_ship_under_20_mb() -> None:
    assert DEMO_WEIGHTS.is_file()
    assert DEMO_WEIGHTS.stat().st_size < 20 * 1024 * 1024


def test_mask_ap_on_unseen_scenes(compiled_ops: None) -> None:
    model = segcore.build("yolact_r18_demo")
    assert model.class_names == list(synthetic.CLASSES)
    # Validation seeds lie outside the range training draws from.
    result = evaluate(model, synthetic_samples("val", 100, (240, 320)), list(synthetic.CLASSES))
    assert result.mask_ap >= 0.5, result.table()
    assert all(ap > 0.3 for ap in result.per_class_mask_ap.values()), result.table()
