"""optimize_for_cpu: the choice follows the installed software and the CPU flags, and is reported."""
import logging

import pytest
import torch

from arrcoc.serving.cpu import CpuConfig, cpu_flags, optimize_for_cpu

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


def test_config_and_backend_checks(tiny):
    with pytest.raises(ValueError, match="bf16"):
        CpuConfig(bf16="maybe")
    with pytest.raises(ValueError, match="backend"):
        optimize_for_cpu(tiny[0], "fast")
