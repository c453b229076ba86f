"""The models' own layers: MaxPool2x2 gives torch's max_pool2d numbers.

Outputs are equal as values; only the sign of a zero maximum may differ (max(-0.0, 0.0) is either
zero, and torch's own maximum picks differently on its vector and scalar paths). Gradients and
trained weights are equal bit for bit.
"""

import zlib

import pytest
import torch
import torch.nn.functional as F

from initstudy.models import MaxPool2x2, build_model


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32)  # compares -0.0 and 0.0 as different, as a bitwise claim must


def _inputs(shape, kind: str, g: torch.Generator) -> torch.Tensor:
    x = torch.randn(shape, generator=g)
    if kind == "relu":  # after a ReLU about 1 window in 16 is all zeros: ties everywhere
        return torch.relu(x)
    if kind == "few_values":  # ties between distinct positions, negatives included
        return torch.randint(-1, 2, shape, generator=g).float()
    if kind == "signed_zeros":  # max(-0.0, 0.0): which zero is kept, and where the gradient goes
        return torch.where(x > 0, torch.tensor(0.0), torch.tensor(-0.0))
    return x


@pytest.mark.parametrize("shape", [(64, 16, 28, 28), (8, 3, 7, 7), (4, 2, 9, 8), (2, 5, 2, 2)])
@pytest.mark.parametrize("kind", ["normal", "relu", "few_values", "signed_zeros"])
def test_maxpool2x2_gives_max_pool2d_values_and_its_gradients_bit_for_bit(shape, kind):
    g = torch.Generator().manual_seed(zlib.crc32(repr((shape, kind)).encode()))
    x = _inputs(shape, kind, g)
    out_shape = (*shape[:2], shape[2] // 2, shape[3] // 2)
    grad = torch.randn(out_shape, generator=g)
    grad[grad.abs() < 0.3] = -0.0  # torch's backward adds into zeros: -0.0 must come out as 0.0, as there
    ref_x, our_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref, ours = F.max_pool2d(ref_x, 2), MaxPool2x2()(our_x)
    ref.backward(grad)
    ours.backward(grad)
    assert torch.equal(ours, ref)
    if kind != "signed_zeros":
        assert torch.equal(_bits(ours), _bits(ref))
    assert torch.equal(_bits(our_x.grad), _bits(ref_x.grad))
    with torch.no_grad():
        assert torch.equal(MaxPool2x2()(x), ref)
    # Not vacuous: a pool that took the last of tied maxima would route these gradients elsewhere.
    if kind in ("relu", "few_values", "signed_zeros"):
        q = [x[..., i:shape[2] // 2 * 2:2, j:shape[3] // 2 * 2:2] for i in (0, 1) for j in (0, 1)]
        assert bool(((q[0] == ref) & (q[3] == ref)).any())


@pytest.mark.parametrize("activation, zeros, bn", [("relu", False, False), ("tanh", False, False),
                                                    ("relu", True, False), ("relu", False, True)],
                         ids=["relu", "tanh", "zero-weights", "batchnorm"])
def test_plain_cnn_trains_to_the_same_weights_with_either_pool(activation, zeros, bn):
    """Five SGD steps with MaxPool2x2 and with nn.MaxPool2d. Zero weights make every window a tie of zeros
    (signed zeros included); BatchNorm removes the conv biases that would otherwise follow a pool."""
    torch.manual_seed(0)
    ours = build_model("plain", 1, 28, 10, activation, depth=6, width=8, bn=bn)
    if zeros:
        for t in ours.parameters():
            torch.nn.init.zeros_(t)
    ref = build_model("plain", 1, 28, 10, activation, depth=6, width=8, bn=bn)
    ref.load_state_dict(ours.state_dict())
    start = {k: v.clone() for k, v in ours.state_dict().items()}
    swapped = 0
    for i, layer in enumerate(ref):
        if isinstance(layer, MaxPool2x2):
            ref[i] = torch.nn.MaxPool2d(2)
            swapped += 1
    assert swapped == 2 and sum(isinstance(m, MaxPool2x2) for m in ours) == 2
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 32, 1, 28, 28, generator=g), torch.randint(0, 10, (5, 32), generator=g)
    for net in (ours, ref):
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        for xb, yb in zip(x, y):
            opt.zero_grad()
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
    for (name, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(_bits(a), _bits(b)) if a.is_floating_point() else torch.equal(a, b), name
    moved = [k for k, v in ours.state_dict().items() if not torch.equal(start[k], v)]
    assert f"{len(ours) - 1}.bias" in moved and len(moved) >= (1 if zeros else len(start) // 2)  # zeros stay stuck
