"""optimize_for_cpu: the choice follows the installed software and the CPU flags, and is reported."""
import logging

import pytest
import torch

from arrcoc.serving.cpu import CpuConfig, cpu_flags, optimize_for_cpu
from arrcoc.serving.traced import TracedBackbone, backbone_sizes, trace_features

NO_BF16 = "processor: 0\nflags\t\t: fpu sse avx2 fma\n"
AMX = "processor: 0\nflags\t\t: fpu avx2 avx512f amx_tile amx_bf16\n"


def test_cpu_flags_parse():
    assert cpu_flags(AMX) == {"fpu", "avx2", "avx512f", "amx_tile", "amx_bf16"}
    assert cpu_flags("") == set()


def test_auto_without_ipex_says_why_and_decides_bf16_from_flags(tiny, caplog):
    model = tiny[0]
    pytest.importorskip("torch._inductor")
    with caplog.at_level(logging.INFO, logger="arrcoc.serving.cpu"):
        plan = optimize_for_cpu(model, "eager", cpuinfo=NO_BF16)
    assert plan.backend == "eager" and plan.bf16 is False and not plan.channels_last  # tiny CLIP: a ViT
    assert "lacks AVX512-BF16/AMX" in str(plan) and "CPU backend eager" in caplog.text
    plan.restore()
    plan = optimize_for_cpu(model, "eager", cpuinfo=AMX)
    assert plan.bf16 is True and "has AVX512-BF16/AMX" in str(plan)
    plan.restore()
    with pytest.raises(ValueError, match="ipex"):
        import importlib.util
        if importlib.util.find_spec("intel_extension_for_pytorch") is not None:
            pytest.skip("IPEX is installed here")
        optimize_for_cpu(model, "ipex")


def test_eager_plan_leaves_outputs_unchanged(tiny, one_thread):
    model = tiny[0]
    pv = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(pv, queries=["where?"], deterministic=True)
        plan = optimize_for_cpu(model, "eager", cpuinfo=NO_BF16)
        with plan.autocast():
            out = model(pv, queries=["where?"], deterministic=True)
    plan.restore()
    assert torch.equal(ref.last_hidden_state, out.last_hidden_state)


@pytest.mark.slow
def test_inductor_backbone_agrees_within_fp32_tolerance(tiny, one_thread):
    model = tiny[0]
    pv = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(pv, queries=["where?"], deterministic=True)
        plan = optimize_for_cpu(model, "inductor", cpuinfo=NO_BF16)
        try:
            out = model(pv, queries=["where?"], deterministic=True)
        finally:
            plan.restore()
    assert plan.backend == "inductor" and torch.equal(ref.allocation, out.allocation)
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, rtol=1e-4, atol=1e-5)


def _cnn_model():
    """A small ARR-COC model on a random-weight timm EfficientNet-Lite0 whose BatchNorms have seeded
    non-trivial statistics (so folding them into the convolutions changes the weights)."""
    from arrcoc.modeling import ARRCOCVisionModel
    from tests.modeling.conftest import tiny_config

    model = ARRCOCVisionModel(tiny_config(backbone={"type": "timm", "name": "tf_efficientnet_lite0"},
                                          levels=[0, 4, 16], global_tokens=4, glimpse_side=4)).eval()
    g = torch.Generator().manual_seed(0)
    for m in model.backbone.model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
    return model


def test_torchscript_cnn_backbone_matches_eager_and_restores(one_thread):
    model = _cnn_model()
    keys = list(model.state_dict())
    pv = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    q = ["what is on the left?", "the top right corner"]
    with torch.no_grad():
        ref = model(pv, queries=q, deterministic=True)
        plan = optimize_for_cpu(model, "auto", cpuinfo=NO_BF16)
        out = model(pv, queries=q, deterministic=True)
    assert plan.backend == "torchscript" and plan.channels_last and not plan.bf16
    assert isinstance(model.backbone, TracedBackbone)
    assert sorted(model.backbone.graphs) == backbone_sizes(model) == [64, 128]  # glimpse/thumbnail 4x4 = level 16; level 4
    assert "frozen TorchScript backbone at 64 px: traced" in str(plan)
    assert list(model.state_dict()) == keys  # same weights under the same names
    assert torch.equal(ref.allocation, out.allocation)
    a, b = ref.last_hidden_state, out.last_hidden_state
    assert float((a - b).abs().max() / a.abs().max()) < 1e-4
    assert not torch.equal(a, b)  # the graphs really ran (folded BatchNorm rounds differently)
    plan.restore()
    assert type(model.backbone).__name__ == "TimmBackbone"
    assert model.backbone.model.conv_stem.weight.is_contiguous()  # channels-last undone
    with torch.no_grad():
        again = model(pv, queries=q, deterministic=True)
    assert torch.equal(again.last_hidden_state, ref.last_hidden_state)


def test_torchscript_vit_backbone_and_sizes_traced_on_demand(tiny, one_thread):
    model = tiny[0]
    pv = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(pv, queries=["where?"], deterministic=True)
        plan = optimize_for_cpu(model, "torchscript", cpuinfo=AMX)
        try:
            out = model(pv, queries=["where?"], deterministic=True)
            bb = model.backbone
            assert not plan.channels_last and not plan.bf16 and "fp32" in str(plan)  # graphs are fp32 only
            crops = torch.randn(3, 3, 40, 40, generator=torch.Generator().manual_seed(2))  # a size not traced yet
            assert 40 not in bb.graphs
            torch.testing.assert_close(bb(crops, 10), bb.eager(crops, 10), rtol=1e-4, atol=1e-5)
            assert 40 in bb.graphs and "traced" in bb.notes[40]
        finally:
            plan.restore()
    assert torch.equal(ref.allocation, out.allocation)
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, rtol=1e-4, atol=1e-5)


class _BatchBranch(torch.nn.Module):
    """A backbone whose output depends on the batch size through Python control flow: a trace at
    one crop bakes in the wrong branch, and the two-crop check must catch it."""

    def __init__(self):
        from arrcoc.backbones import VisionBackbone

        super().__init__()
        outer = self

        class Net(VisionBackbone):
            feature_dim, patch_size, native_size, resizable = 3, 4, 16, True

            def __init__(self):
                super().__init__()
                self.model = torch.nn.Conv2d(3, 3, 4, stride=4)

            def _features(self, x):
                y = self.model(x)
                y = y * 2 if x.shape[0] > 1 else y
                return y.flatten(2).transpose(1, 2), y.shape[-2], y.shape[-1]

        outer.net = Net()


def test_a_graph_that_disagrees_with_eager_is_refused_and_that_size_runs_eagerly():
    net = _BatchBranch().net.eval()
    with pytest.raises(RuntimeError, match="differs from eager"):
        trace_features(net, 16)
    traced = TracedBackbone(net, [16])
    assert traced.graphs == {} and traced.notes[16].startswith("eager: RuntimeError")
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(traced(x, 4), net(x, 4))
    with pytest.raises(ValueError, match="torchscript"):
        from arrcoc.modeling import ARRCOCVisionModel
        from tests.modeling.conftest import tiny_config

        model = ARRCOCVisionModel(tiny_config(), backbone=net)
        optimize_for_cpu(model, "torchscript")
    with pytest.raises(TypeError, match="backbone"):
        TracedBackbone(traced)


def test_config_and_backend_checks(tiny):
    with pytest.raises(ValueError, match="bf16"):
        CpuConfig(bf16="maybe")
    with pytest.raises(ValueError, match="backend"):
        optimize_for_cpu(tiny[0], "fast")
