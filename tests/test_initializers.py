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
    torch_names = {"relu": ("relu",), "tanh": ("tanh",), "sigmoid": ("sigmoid",), "selu": ("selu",),
                   "leaky_relu": ("leaky_relu", 0.01), "identity": ("linear",)}
    for act, args in torch_names.items():
        assert ACTIVATIONS[act].gain == pytest.approx(nn.init.calculate_gain(*args))
    assert ACTIVATIONS["gelu"].gain == pytest.approx(math.sqrt(2))  # our documented choice


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


def test_bias_policies():
    for name, spec in INITIALIZERS.items():
        if spec.whole_model:
            continue
        layer = _init(SHAPES["conv"], name)
        if name == "default":  # torch's own bias draw
            bound = 1 / math.sqrt(fans(layer.weight)[0])
            assert torch.count_nonzero(layer.bias) == layer.bias.numel()
            assert float(layer.bias.abs().max()) <= bound
        else:
            assert torch.count_nonzero(layer.bias) == 0, name
    layer = nn.Conv2d(32, 64, 3)
    apply_init(nn.Sequential(layer), make_spec("kaiming_normal", bias=0.1), "relu", torch.Generator().manual_seed(0))
    assert torch.all(layer.bias == 0.1)
    apply_init(nn.Sequential(layer), make_spec("kaiming_normal", bias="torch"), "relu", torch.Generator().manual_seed(0))
    assert 0 < float(layer.bias.detach().abs().max()) <= 1 / math.sqrt(32 * 9)
    assert make_spec("kaiming_normal", bias=0.1).label == "kaiming_normal(bias=0.1)"


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


# ---------------------------------------------------------------- the full catalog (issue: initializer catalog)

BIG = {"conv": nn.Conv2d(64, 128, 3), "linear": nn.Linear(512, 384)}


@pytest.mark.parametrize("shape", BIG)
@pytest.mark.parametrize("name", [n for n, i in INITIALIZERS.items() if i.theory is not None])
def test_every_formula_predicts_its_empirical_std(shape, name):
    """The std each formula predicts (theoretical_std) is what the draws have, within 6 standard errors."""
    from initstudy.initializers import theoretical_std

    layer = _init(BIG[shape], name)
    expected = theoretical_std(make_spec(name), layer, "relu")
    got = float(layer.weight.std())
    n = layer.weight.numel()
    if expected == 0:
        assert got == pytest.approx(0, abs=1e-6)
    else:
        assert abs(got - expected) < 6 * expected / math.sqrt(2 * n) + 1e-12, (got, expected)


def test_grouped_and_depthwise_fans():
    from initstudy.initializers import layer_fans

    grouped, depthwise = nn.Conv2d(32, 64, 3, groups=4), nn.Conv2d(32, 32, 3, groups=32)
    assert layer_fans(grouped) == (8 * 9, 16 * 9)
    assert layer_fans(depthwise) == (9, 9)  # torch would say fan_out = 288
    w = nn.Conv2d(256, 256, 5, groups=256)
    apply_init(nn.Sequential(w), make_spec("kaiming_normal", {"mode": "fan_out"}), "relu",
               torch.Generator().manual_seed(0))
    w = w.weight.detach()
    _close_std(w, math.sqrt(2) / math.sqrt(25))
    g = nn.Conv2d(64, 128, 3, groups=8)
    apply_init(nn.Sequential(g), make_spec("xavier_normal"), "relu", torch.Generator().manual_seed(0))
    _close_std(g.weight.detach(), math.sqrt(2 / (8 * 9 + 16 * 9)))


def test_positive_and_ones():
    w = _init(BIG["conv"], "positive", bound=0.2).weight
    assert float(w.min()) >= 0 and float(w.max()) <= 0.2 and float(w.max()) > 0.199
    assert abs(float(w.mean()) - 0.1) < 6 * (0.2 / math.sqrt(12)) / math.sqrt(w.numel())
    assert torch.all(_init(BIG["conv"], "ones").weight == 1)


def test_truncated_normal_cutoffs_and_keras_constant():
    w = _init(BIG["conv"], "truncated_normal", std=1.0, a=-2.0, b=2.0).weight
    assert float(w.min()) >= -2 and float(w.max()) <= 2
    # A standard normal cut at +-2 has std 0.87962566..., the constant Keras divides by.
    _close_std(w, 0.87962566103423978)


@pytest.mark.parametrize("distribution", ["truncated_normal", "untruncated_normal", "uniform"])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_keras_variance_scaling(distribution, mode):
    layer = _init(BIG["conv"], "variance_scaling", scale=2.0, mode=mode, distribution=distribution)
    fi, fo = fans(layer.weight)
    n = {"fan_in": fi, "fan_out": fo, "fan_avg": (fi + fo) / 2}[mode]
    _close_std(layer.weight, math.sqrt(2.0 / n))
    if distribution == "truncated_normal":
        assert float(layer.weight.abs().max()) <= 2 * math.sqrt(2.0 / n) / 0.87962566103423978


def test_lecun_uniform_bound():
    layer = _init(BIG["linear"], "lecun_uniform")
    bound = math.sqrt(3 / 512)
    assert bound * 0.99 < float(layer.weight.abs().max()) <= bound


def test_sparse_zeroes_a_fraction_of_each_column():
    layer = _init(BIG["conv"], "sparse", sparsity=0.25, std=0.1)
    w2 = layer.weight.view(128, -1)
    zeros_per_column = (w2 == 0).sum(dim=0)
    assert torch.all(zeros_per_column == math.ceil(0.25 * 128))
    _close_std(w2[w2 != 0], 0.1)


def test_dirac_is_the_identity_map():
    conv = nn.Conv2d(16, 16, 3, padding=1)
    apply_init(nn.Sequential(conv), make_spec("dirac"), "relu", torch.Generator().manual_seed(0))
    x = torch.randn(4, 16, 8, 8)
    assert torch.allclose(conv(x), x, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_delta_orthogonal_centre_tap(activation):
    conv = _init(nn.Conv2d(32, 64, 3), "delta_orthogonal", activation)
    w = conv.weight
    gain = ACTIVATIONS[activation].gain
    centre = w[:, :, 1, 1]
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1, 1] = False
    assert torch.count_nonzero(w[:, :, mask]) == 0
    assert torch.allclose(centre.T @ centre, gain ** 2 * torch.eye(32), atol=1e-4)  # norm-preserving


def test_delta_orthogonal_rejects_fewer_outputs_than_inputs():
    from initstudy.initializers import check_applicable

    reason = check_applicable(make_spec("delta_orthogonal"), nn.Sequential(nn.Conv2d(32, 16, 3)), "plain")
    assert reason and "out >= in" in reason
    assert check_applicable(make_spec("delta_orthogonal"), build_model("plain", 1, 28, 10, "relu"), "plain") is None


def test_lsuv_gives_unit_output_std_on_real_data():
    from initstudy.data import load_dataset
    from initstudy.diagnostics import layer_diagnostics

    x, y = load_dataset("mnist5k", None, 0).probe
    net = build_model("plain", 1, 28, 10, "tanh", depth=8, width=16)
    spec = make_spec("lsuv", {"tol": 0.05})
    apply_init(net, spec, "tanh", torch.Generator().manual_seed(0), batch=x)
    stds = [r["activation_std"] for r in layer_diagnostics(net, spec, "tanh", x, y)]
    assert len(stds) == 9 and all(abs(s - 1) < 0.05 for s in stds), stds
    with pytest.raises(ValueError, match="needs a batch"):
        apply_init(net, spec, "tanh", torch.Generator().manual_seed(0))


def test_zero_matrices_follow_algorithm_1():
    from initstudy.initializers import zero_matrix

    assert torch.equal(zero_matrix(4, 4), torch.eye(4))
    assert torch.equal(zero_matrix(3, 5), torch.eye(3, 5))
    m = zero_matrix(16, 4)  # P > Q: 2^(-(m-1)/2) * H_4[:16, :4], m = 4
    assert torch.allclose(m.T @ m, 2 * torch.eye(4))
    assert torch.allclose(m.abs(), torch.full((16, 4), 2 ** -1.5))
    m = zero_matrix(12, 3)  # m = ceil(log2 12) = 4
    assert torch.allclose(m.abs(), torch.full((12, 3), 2 ** -1.5))


def test_zero_is_deterministic_and_zeroes_residual_ends():
    a, b = (build_model("resnet", 3, 32, 10, "relu", depth=8, bn=True) for _ in range(2))
    apply_init(a, make_spec("zero"), "relu", torch.Generator().manual_seed(0))
    apply_init(b, make_spec("zero"), "relu", torch.Generator().manual_seed(1))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    for blk in a.blocks:
        assert torch.count_nonzero(blk.conv2.weight) == 0
        c = blk.conv1.weight
        assert torch.count_nonzero(c[:, :, [0, 2]]) == 0  # only the centre tap


def test_fixup_rule_and_rejection():
    from initstudy.config import load_study
    from initstudy.errors import StudyError

    net = build_model("resnet", 1, 28, 10, "relu", depth=14, bn=False)  # 6 residual branches of 2 layers
    apply_init(net, make_spec("fixup"), "relu", torch.Generator().manual_seed(0))
    assert torch.count_nonzero(net.fc.weight) == 0 and torch.count_nonzero(net.fc.bias) == 0
    conv1 = torch.cat([b.conv1.weight.flatten() for b in net.blocks[:2]])  # 16 -> 16 channels, fan_in 144
    _close_std(conv1.detach(), math.sqrt(2) / math.sqrt(144) * 6 ** -0.5)
    for b in net.blocks:
        assert torch.count_nonzero(b.conv2.weight) == 0
        assert b.scale.value.item() == 1 and b.bias1a.value.item() == 0
    with pytest.raises(StudyError, match="fixup needs residual branches; model 'plain'"):
        load_study("smoke", ["models=[plain]", "initializers=[fixup]"])
    load_study("smoke", ["models=[resnet]", "depth=8", "initializers=[fixup]"])


def test_signal_propagation_20_layers_on_real_data():
    """He keeps activation std within a small factor over 20 ReLU layers; Xavier shrinks it geometrically
    (by about 1/sqrt(2) per layer); zeros kills it. Width 32 leaves finite-width wobble of up to ~2x around
    the He fixed point (seen over seeds), so the band is a factor of 3 of the first layer."""
    from initstudy.data import load_dataset
    from initstudy.diagnostics import layer_diagnostics

    x, y = load_dataset("mnist5k", None, 0).probe
    stds = {}
    for name in ("kaiming_normal", "xavier_normal", "zeros"):
        net = build_model("plain", 1, 28, 10, "relu", depth=20, width=32)
        spec = make_spec(name)
        apply_init(net, spec, "relu", torch.Generator().manual_seed(0))
        stds[name] = [r["activation_std"] for r in layer_diagnostics(net, spec, "relu", x, y)][:-1]
    k, xv = stds["kaiming_normal"], stds["xavier_normal"]
    assert all(k[0] / 3 < s < 3 * k[0] for s in k), k
    ratios = [b / a for a, b in zip(xv, xv[1:])]
    assert all(0.5 < r < 0.9 for r in ratios[3:])  # about 1/sqrt(2) per layer once past the pools
    assert xv[-1] / xv[0] < 1e-2
    assert all(s == 0 for s in stds["zeros"])


def test_models_build_for_every_dataset_shape_and_activation():
    from initstudy.data import DATASET_SHAPES
    from initstudy.models import MODELS

    for c, side, classes in DATASET_SHAPES.values():
        for model in MODELS:
            for act in ACTIVATIONS:
                kwargs = {"depth": 8} if model != "simple" else {}
                net = build_model(model, c, side, classes, act, **kwargs)
                assert net(torch.zeros(2, c, side, side)).shape == (2, classes)
    assert any(isinstance(m, nn.BatchNorm2d) for m in build_model("vgg", 1, 28, 10, "relu").modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in build_model("vgg", 1, 28, 10, "relu", bn=False).modules())


def test_same_config_different_init_differs_only_in_weights():
    from initstudy.config import expand, load_study
    from initstudy.data import load_dataset
    from initstudy.training import build_run

    a, b = [s for s in expand(load_study("smoke")) if s.seed == 0][1:3]
    d = load_dataset("digits", None, 0)
    na, nb = build_run(a, d), build_run(b, d)
    assert [(k, v.shape) for k, v in na.state_dict().items()] == [(k, v.shape) for k, v in nb.state_dict().items()]
    assert str(na) == str(nb)
    assert any(not torch.equal(p, q) for p, q in zip(na.parameters(), nb.parameters()))
