"""Least-error int8 activation ranges: the error measure, the chosen ranges, and their effect on a full-int8 file."""

import numpy as np
import pytest
import tensorflow as tf

from oat_tf.activation_ranges import LEVELS, minimize_activation_mse, quantization_mse
from oat_tf.export import convert


def test_quantization_mse_is_zero_on_the_grid_and_counts_clipping():
    low, high = -1.0, 3.0
    step = (high - low) / (LEVELS - 1)
    zero_point = np.round(-low / step)
    on_grid = (np.arange(LEVELS) - zero_point) * step
    assert quantization_mse(on_grid, np.ones(LEVELS), low, high) < 1e-12
    # Halfway between two levels the error is (step / 2)²; beyond the range, the squared distance to the top level.
    assert quantization_mse(np.array([on_grid[10] + step / 2]), np.ones(1), low, high) == pytest.approx((step / 2) ** 2,
                                                                                                         rel=1e-3)
    assert quantization_mse(np.array([high + 0.5]), np.ones(1), low, high) == pytest.approx(
        (high + 0.5 - on_grid[-1]) ** 2, rel=1e-6)


class _TwoConvolutions(tf.Module):
    """image (B, 8, 8, 3), lam (B,) → logits (B, 4): conv, ReLU, conv, mean, scaled by 1 + λ (float op)."""

    def __init__(self, rng):
        super().__init__()
        self.first = tf.constant(rng.normal(0, 0.5, (3, 3, 3, 8)), tf.float32)
        self.second = tf.constant(rng.normal(0, 0.5, (3, 3, 8, 4)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image"),
                                  tf.TensorSpec([None], tf.float32, name="lam")])
    def serve(self, image, lam):
        hidden = tf.nn.relu(tf.nn.conv2d(image, self.first, 1, "SAME"))
        logits = tf.reduce_mean(tf.nn.conv2d(hidden, self.second, 1, "SAME"), [1, 2])
        return {"logits": logits * (1.0 + lam[:, None])}


def _calibrated(tmp_path):
    """(SavedModel path, calibrated model bytes, representative): 30 dim calibration images, one of them
    with a single bright pixel, so that each activation's recorded range is set by a few values."""
    rng = np.random.default_rng(1)
    module = _TwoConvolutions(rng)
    saved_model = str(tmp_path / "saved_model")
    tf.saved_model.save(module, saved_model, signatures={"serving_default": module.serve})
    images = rng.uniform(0, 0.2, (30, 8, 8, 3)).astype(np.float32)
    images[0, 3, 3] = 1.0

    def representative():
        for image in images:
            yield {"image": image[None], "lam": np.array([0.5], np.float32)}

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=representative)
    return saved_model, debugger.calibrated_model, representative


@pytest.mark.slow
def test_chosen_ranges_cut_the_error_on_the_calibration_values_and_reach_the_int8_file(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    saved_model, calibrated, representative = _calibrated(tmp_path)
    _, report = minimize_activation_mse(calibrated, representative)
    interpreter = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    runner = interpreter.get_signature_runner()
    indices = {detail["name"]: detail["index"] for detail in interpreter.get_tensor_details()}
    assert report and not any(name.startswith("serving_default_") for name in report)  # graph inputs keep theirs
    values = {name: [] for name in report}
    for sample in representative():
        runner(**sample)
        for name in report:
            values[name].append(interpreter.get_tensor(indices[name]).ravel())
    ratios = []
    for name, entry in report.items():
        (low, high), (new_low, new_high) = entry["recorded"], entry["chosen"]
        assert low <= new_low <= new_high <= high, name
        assert new_low <= max(low, 0.0) and new_high >= min(high, 0.0), name  # zero stays inside when it was
        seen = np.concatenate(values[name])
        assert seen.min() == pytest.approx(low) and seen.max() == pytest.approx(high), name
        ones = np.ones(len(seen))
        ratio = quantization_mse(seen, ones, new_low, new_high) / quantization_mse(seen, ones, low, high)
        assert ratio <= 1.0 + 1e-6, (name, ratio)  # exact values, not the histogram the search used
        ratios.append(ratio)
    assert min(ratios) < 1.0, report  # the bright pixel's tail is worth clipping somewhere

    quantized = Interpreter(model_content=convert(saved_model, "int8", representative=representative,
                                                  activation_ranges="mse"))
    scales = {d["name"]: d["quantization_parameters"]["scales"] for d in quantized.get_tensor_details()}
    shrunk = [name for name, entry in report.items() if entry["chosen"] != entry["recorded"] and len(scales.get(name, [])) == 1]
    assert shrunk, (report, sorted(scales))
    for name in shrunk:
        new_low, new_high = report[name]["chosen"]
        assert scales[name][0] == pytest.approx((new_high - new_low) / (LEVELS - 1), rel=1e-3), name


def test_convert_refuses_an_unknown_range_method(tmp_path):
    saved_model, _, representative = _calibrated(tmp_path)
    with pytest.raises(ValueError, match="activation_ranges"):
        convert(saved_model, "int8", representative=representative, activation_ranges="percentile")
