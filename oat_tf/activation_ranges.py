"""Int8 activation ranges chosen by quantization error instead of the calibration's extremes.

TFLite's calibration records each activation tensor's range as the minimum and maximum it takes over
the representative inputs, so a few extreme values set the int8 step of all the others, and the
full-int8 file's error is that step's rounding. `minimize_activation_mse` replaces each recorded range
with the one that minimizes the squared error of quantizing the tensor's calibration values to 256
levels, found by TensorFlow's own histogram calibration (`HISTOGRAM_MSE_MAX_FREQUENCY` of its
StableHLO quantizer: from the most frequent bin, widen the range to either side and keep the
range of least error). Values beyond a shrunk range saturate. The graph inputs (image, λ) keep their
recorded ranges.
"""

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from tensorflow.compiler.mlir.quantization.stablehlo import quantization_config_pb2
from tensorflow.compiler.mlir.quantization.tensorflow.calibrator import calibration_algorithm, calibration_statistics_pb2
from tensorflow.lite.tools import flatbuffer_utils

LEVELS = 256
CALIBRATION_METHOD = quantization_config_pb2.CalibrationOptions.CALIBRATION_METHOD_HISTOGRAM_MSE_MAX_FREQUENCY


def quantization_mse(mids, counts, low, high):
    """Mean squared error of quantizing values at `mids` (with `counts`) to LEVELS levels on [low, high],
    zero exactly representable, as TFLite's asymmetric int8 does."""
    scale = max((high - low) / (LEVELS - 1), 1e-12)
    zero_point = np.round(-low / scale)
    codes = np.clip(np.round(mids / scale) + zero_point, 0, LEVELS - 1)
    return float(np.sum(counts * (mids - (codes - zero_point) * scale) ** 2) / max(np.sum(counts), 1))


def _recorded_ranges(subgraph):
    """{tensor index: (min, max)} for every tensor the calibration gave one per-tensor range, inputs excluded."""
    ranges = {}
    for index, tensor in enumerate(subgraph.tensors):
        quantization = tensor.quantization
        if index in subgraph.inputs or quantization is None or quantization.min is None or len(quantization.min) != 1:
            continue
        low, high = float(quantization.min[0]), float(quantization.max[0])
        if high > low:
            ranges[index] = (low, high)
    return ranges


def _histograms(calibrated_model, ranges, representative, num_bins):
    """Per tensor, counts of its calibration values in `num_bins` equal bins over its recorded range."""
    interpreter = Interpreter(model_content=calibrated_model, experimental_preserve_all_tensors=True)
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise ValueError(f"activation ranges are chosen for one signature; the model has {sorted(signatures)}.")
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    counts = {index: np.zeros(num_bins) for index in ranges}
    for sample in representative():
        runner(**sample)
        for index, (low, high) in ranges.items():
            values = np.clip(interpreter.get_tensor(index).ravel().astype(np.float64), low, high)
            counts[index] += np.histogram(values, bins=num_bins, range=(low, high))[0]
    return counts


def _least_error_range(counts, low, high):
    """TensorFlow's least-error (low, high) for a histogram over [low, high], holding zero and within it."""
    bin_width = (high - low) / len(counts)
    statistics = calibration_statistics_pb2.CalibrationStatistics(
        histogram_statistics=calibration_statistics_pb2.CalibrationStatistics.HistogramStatistics(
            bin_width=bin_width, lower_bound=low, hist_freq=counts.tolist()))
    options = quantization_config_pb2.CalibrationOptions(calibration_method=CALIBRATION_METHOD)
    best_low, best_high = calibration_algorithm.get_min_max_value(statistics, options)
    return max(min(best_low, 0.0), low), min(max(best_high, 0.0), high)


def minimize_activation_mse(calibrated_model, representative, num_bins=4096):
    """(model bytes with least-error activation ranges, report) for a calibrated TFLite model.

    `calibrated_model`: bytes from the converter's calibration step (float ops with each tensor's
    recorded min/max, as `tf.lite.experimental.QuantizationDebugger.calibrated_model`), one signature.
    `representative`: the callable that calibrated it, returning an iterator of input dicts.
    The report gives, per tensor name, the recorded and chosen range and the ratio of their
    quantization MSE on the calibration values (≤ 1). `num_bins`: 4,096 bins put 16 in each int8 step
    of the recorded range, so that the error of the bins' centres is the values' error (with 512, two
    per step, it was not: a chosen range could be worse on the values themselves).
    """
    model = flatbuffer_utils.convert_bytearray_to_object(calibrated_model)
    if len(model.subgraphs) != 1:
        raise ValueError(f"expected a model with one subgraph, got {len(model.subgraphs)}.")
    subgraph = model.subgraphs[0]
    ranges = _recorded_ranges(subgraph)
    histograms = _histograms(calibrated_model, ranges, representative, num_bins)
    report = {}
    for index, (low, high) in ranges.items():
        counts = histograms[index]
        mids = low + (np.arange(num_bins) + 0.5) * (high - low) / num_bins
        new_low, new_high = _least_error_range(counts, low, high)
        recorded_error = quantization_mse(mids, counts, low, high)
        new_error = quantization_mse(mids, counts, new_low, new_high)
        if new_error >= recorded_error:  # the search's range must earn its place on the same histogram
            new_low, new_high, new_error = low, high, recorded_error
        subgraph.tensors[index].quantization.min = np.array([new_low], np.float32)
        subgraph.tensors[index].quantization.max = np.array([new_high], np.float32)
        name = subgraph.tensors[index].name
        report[name.decode() if isinstance(name, bytes) else name] = dict(
            recorded=[low, high], chosen=[new_low, new_high],
            mse_ratio=new_error / recorded_error if recorded_error > 0 else 1.0)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), report
