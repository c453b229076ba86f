"""Each initializer against its formula, on conv and linear shapes.

Sources: Glorot & Bengio (2010) eqs. 12/16 for Xavier; He et al. (2015) eq. 10 for
Kaiming; LeCun et al. (1998, "Efficient BackProp", sec. 4.6) for LeCun; Saxe et al.
(2014) for orthogonal; torch's nn.Conv2d.reset_parameters for the default.
Tolerance: the sample std of N draws has standard error sigma / sqrt(2N) for a
normal (sigma * sqrt(0.8 / (4N)) ~ 0.45 sigma / sqrt(N) for a uniform), so 6 such
errors are allowed; bounds are checked exactly.
"""

import math

import pytest
import torch
from torch import nn

from initstudy.initializers import INITIALIZERS, apply_init, fans, make_spec, resolve_gain
from initstudy.models import ACTIVATIONS, build_model

SHAPES = {"conv": nn.Conv2d(32, 64, 3), "linear": nn.Linear(400, 300)}


def _init(layer, name, activation="relu", seed=0, **options):
    layer = type(layer)(*_args(layer))
    apply_init(nn.Sequential(layer), make_spec(name, options), activation, torch.Generator().manual_seed(seed))
    return layer.requires_grad_(False)


def _args(layer):
    if isinstance(layer, nn.Conv2d):
        return layer.in_channels, layer.out_channels, layer.kernel_size
    return layer.in_features, layer.out_features


def _close_std(w, expected):
    n = w.numel()
    tol = 6 * expected / math.sqrt(2 * n)
    assert abs(float(w.std()) - expected) < tol, (float(w.std()), expected, tol)
    assert abs(float(w.mean())) < 6 * expected / math.sqrt(n)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_variance_scaling_family(shape, activation):
    fan_in, fan_out = fans(SHAPES[shape].weight)
    gain = ACTIVATIONS[activation].gain
    _close_std(_init(SHAPES[shape], "kaiming_normal", activation).weight, gain / math.sqrt(fan_in))
    _close_std(_init(SHAPES[shape], "kaiming_normal", activation, mode="fan_out").weight, gain / math.sqrt(fan_out))
    _close_std(_init(SHAPES[shape], "xavier_normal", activation).weight, math.sqrt(2 / (fan_in + fan_out)))
    _close_std(_init(SHAPES[shape], "lecun_normal", activation).weight, 1 / math.sqrt(fan_in))
    for name, bound in (("kaiming_uniform", gain * math.sqrt(3 / fan_in)),
                        ("xavier_uniform", math.sqrt(6 / (fan_in + fan_out))),
                        ("default", 1 / math.sqrt(fan_in))):
        w = _init(SHAPES[shape], name, activation).weight
        assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.99 * bound
        _close_std(w, bound / math.sqrt(3))


def test_gain_rules_and_override():
    assert resolve_gain(make_spec("xavier_normal"), "relu") == 1.0  # Glorot: no gain
    assert resolve_gain(make_spec("lecun_normal"), "tanh") == 1.0
    assert resolve_gain(make_spec("kaiming_normal"), "relu") == pytest.approx(math.sqrt(2))
    assert resolve_gain(make_spec("kaiming_normal"), "tanh") == pytest.approx(5 / 3)
    assert resolve_gain(make_spec("orthogonal"), "relu") == pytest.approx(math.sqrt(2))
    assert resolve_gain(make_spec("xavier_normal", gain=2.0), "relu") == 2.0
    for act in ACTIVATIONS:
        assert ACTIVATIONS[act].gain == pytest.approx(nn.init.calculate_gain(act))


@pytest.mark.parametrize("shape", SHAPES)
def test_fixed_scale_initializers(shape):
    assert torch.count_nonzero(_init(SHAPES[shape], "zeros").weight) == 0
    assert torch.all(_init(SHAPES[shape], "constant", value=0.3).weight == 0.3)
    _close_std(_init(SHAPES[shape], "normal").weight, 0.01)
    _close_std(_init(SHAPES[shape], "normal", std=0.2).weight, 0.2)
    w = _init(SHAPES[shape], "uniform").weight
    assert float(w.abs().max()) <= 0.05 and float(w.abs().max()) > 0.049


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_orthogonal_rows(shape, activation):
    w = _init(SHAPES[shape], "orthogonal", activation).weight.flatten(1)
    gain = ACTIVATIONS[activation].gain
    rows, cols = w.shape
    gram = w @ w.T if rows <= cols else w.T @ w
    assert torch.allclose(gram, gain ** 2 * torch.eye(min(rows, cols)), atol=1e-4)


def test_biases_zero_except_torch_default():
    for name in INITIALIZERS:
        layer = _init(SHAPES["conv"], name)
        if name == "default":
            bound = 1 / math.sqrt(fans(layer.weight)[0])
            assert torch.count_nonzero(layer.bias) == layer.bias.numel()
            assert float(layer.bias.abs().max()) <= bound
        else:
            assert torch.count_nonzero(layer.bias) == 0, name


def test_same_generator_same_weights_and_different_seed_differs():
    for name in ("kaiming_normal", "orthogonal", "default", "xavier_uniform"):
        a, b, c = (_init(SHAPES["conv"], name, seed=s) for s in (1, 1, 2))
        assert torch.equal(a.weight, b.weight)
        assert not torch.equal(a.weight, c.weight)


def test_init_is_applied_from_outside_and_reaches_every_layer():
    net = build_model("plain", 1, 28, 10, "relu", depth=4, width=8)
    apply_init(net, make_spec("zeros"), "relu", torch.Generator().manual_seed(0))
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 5
    assert all(torch.count_nonzero(m.weight) == 0 for m in layers)


def test_signal_propagation_physics():
    """Kaiming keeps a deep ReLU stack's activation scale; Xavier halves its variance per layer."""
    from initstudy.data import load_dataset

    x = load_dataset("mnist5k", None, 0).x_train[:256]
    stds = {}
    for name in ("kaiming_normal", "xavier_normal"):
        net = build_model("plain", 1, 28, 10, "relu", depth=12, width=32)
        apply_init(net, make_spec(name), "relu", torch.Generator().manual_seed(0))
        convs = [m for m in net if isinstance(m, nn.ReLU)]
        out = []
        hooks = [m.register_forward_hook(lambda m, i, o: out.append(float(o.std()))) for m in convs]
        with torch.no_grad():
            net(x)
        for h in hooks:
            h.remove()
        stds[name] = out
    k, xv = stds["kaiming_normal"], stds["xavier_normal"]
    assert max(k) / min(k) < 3  # within a small factor over 12 layers
    assert xv[-1] / xv[0] < 0.1  # geometric shrinkage, about 2^-5.5 in std over 11 layers
