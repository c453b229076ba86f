"""The built-in models in either memory format: channels-last (the CPU's default) computes what NCHW does,
up to float32 rounding, and the format is chosen by device and model."""

import pytest
import torch
import torch.nn.functional as F

from initstudy.models import MODELS, build_model
from initstudy.training import memory_format

CL = torch.channels_last


@pytest.mark.parametrize("name, size", [(m, s) for m in MODELS for s in (8, 28)])
def test_channels_last_gives_nchw_outputs_and_gradients(name, size):
    """Same weights, same batch, one SGD step in each format: logits, gradients and stepped weights agree to
    float32 rounding. A layer that mixed up the layout (a `.view` of a channels-last map as NCHW, a flatten in
    the wrong order) would give other numbers or raise."""
    torch.manual_seed(0)
    nchw = build_model(name, 1, size, 10, "relu")
    cl = build_model(name, 1, size, 10, "relu")
    cl.load_state_dict(nchw.state_dict())
    cl.to(memory_format=CL)
    assert memory_format(cl, "cpu") == CL
    assert any(p.dim() == 4 and not p.is_contiguous() for p in cl.parameters())  # really converted
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 1, size, size, generator=g), torch.randint(0, 10, (16,), generator=g)
    outs = []
    for net, xb in ((nchw, x), (cl, x.contiguous(memory_format=CL))):
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        logits = net(xb)
        F.cross_entropy(logits, y).backward()
        grads = [p.grad.clone() for p in net.parameters()]
        opt.step()
        outs.append((logits.detach(), grads, [p.detach().clone() for p in net.parameters()]))
    (l0, g0, w0), (l1, g1, w1) = outs
    torch.testing.assert_close(l1, l0, rtol=1e-4, atol=1e-5)
    for a, b in zip(g1 + w1, g0 + w0):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_memory_format_by_device_and_model():
    conv = build_model("simple", 1, 8, 10, "relu")
    assert memory_format(conv, "cpu") == CL and memory_format(conv, torch.device("cpu")) == CL
    assert memory_format(conv, "cuda:0") == torch.contiguous_format  # GPUs keep torch's default
    assert memory_format(None, "cpu") == CL and memory_format(None, "cuda") == torch.contiguous_format
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # no conv: nothing to gain
    assert memory_format(mlp, "cpu") == torch.contiguous_format
    conv.initstudy_channels_last = False  # a user's model whose forward needs NCHW opts out
    assert memory_format(conv, "cpu") == torch.contiguous_format


def test_a_user_model_with_conv_weights_trains_channels_last(tmp_path, monkeypatch):
    """A plugin model gets no special treatment: its 4-D weights are converted, and the run trains."""
    from initstudy.config import expand, load_study
    from initstudy.training import train_run

    (tmp_path / "usermodels.py").write_text(
        "import torch\n"
        "def tiny(in_channels, image_size, num_classes, act):\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 3, padding=1), act(),\n"
        "                               torch.nn.Flatten(), torch.nn.Linear(4 * image_size ** 2, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = expand(load_study("smoke", ["models=[usermodels:tiny]", "seeds=[0]", "initializers=[kaiming_normal]",
                                       "epochs=1"]))[0]
    seen = []
    original = torch.nn.Conv2d.forward
    monkeypatch.setattr(torch.nn.Conv2d, "forward",
                        lambda self, x: seen.append(self.weight.stride(1) == 1) or original(self, x))
    result = train_run(spec, None, "cpu")
    assert result.status == "done" and len(result.history) == 2
    assert seen and seen[-1]  # trained with channels-last weights (NCHW's stride over 1 in-channel is 9)
