from oat_tf import build_model
from oat_tf.summary import count_macs, summarize


def conv_macs(model, width=1.0):
    """Multiply-accumulates of the convolutions and the classifier, from the architecture alone."""
    size, total, channels = model.image_size, 0, round(model.stem_channels * width)
    total += size * size * 9 * 3 * channels
    for out_channels, count, stride in model.stages:
        out_channels = round(out_channels * width)
        for j in range(count):
            s = stride if j == 0 else 1
            size_out = -(-size // s)
            total += size_out**2 * 9 * (channels * out_channels + out_channels * out_channels)
            if s != 1 or channels != out_channels:
                total += size_out**2 * channels * out_channels
            size, channels = size_out, out_channels
    return total + channels * model.num_classes


def test_profiler_count_matches_the_architecture():
    for width in (1.0, 0.5):
        model = build_model("resnet20", "slimmable")
        expected = conv_macs(model, width)
        macs = count_macs(model, width)
        # The profiler also counts BN, ReLU and pooling: a little above the convolutions alone.
        assert expected <= macs <= 1.03 * expected, (width, macs, expected)


def test_resnet34_oat_overhead_is_small_and_positive():
    (row,) = summarize("resnet34", "oat")
    assert 1.15e9 < row["plain_macs"] < 1.17e9  # the paper's 1.16 G for ResNet-34 on CIFAR-10
    assert 0.0 < row["overhead_percent"] < 2.0
    assert row["params"] > row["plain_params"]
