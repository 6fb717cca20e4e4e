"""The torchvision compatibility fix: pure-PyTorch nms against a brute-force reference, and the
end-to-end recipe (torchvision with unloadable ops -> import torchvision/timm/transformers models)
in a fresh interpreter wherever torchvision is installed."""
import subprocess
import sys
import textwrap

import pytest
import torch

from arrcoc.backbones._torchvision_compat import (nms_reference, torchvision_extension_path,
                                                  torchvision_ops_loadable)


def _brute_nms(boxes, scores, thr):
    """Definition of greedy NMS, written independently: visit by score, keep if no kept box overlaps."""
    def iou(a, b):
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / ua if ua > 0 else 0.0
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(iou(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("n,thr", [(1, 0.5), (7, 0.3), (40, 0.5), (40, 0.0), (25, 0.9)])
def test_nms_matches_definition(gen, n, thr):
    xy = torch.rand(n, 2, generator=gen) * 50
    wh = torch.rand(n, 2, generator=gen) * 30 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(n, generator=gen)
    got = nms_reference(boxes, scores, thr).tolist()
    assert got == _brute_nms(boxes.tolist(), scores.tolist(), thr)


def test_nms_known_case_and_empty():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # box 3 (0.95) suppresses 0 (IoU 0.952) and 1 (IoU ~0.69 > 0.5); box 2 is disjoint
    assert nms_reference(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms_reference(boxes[:0], scores[:0], 0.5).numel() == 0
    with pytest.raises(ValueError, match="dets"):
        nms_reference(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores"):
        nms_reference(torch.zeros(3, 4), torch.zeros(2), 0.5)


def test_probe_does_not_import_torchvision():
    import importlib.util
    if importlib.util.find_spec("torchvision") is None:
        assert torchvision_extension_path() is None
        assert torchvision_ops_loadable() is None
    else:
        assert isinstance(torchvision_ops_loadable(), bool)


RECIPE = textwrap.dedent("""
    import sys
    from arrcoc.backbones._torchvision_compat import ensure_torchvision_importable, torchvision_ops_loadable
    loadable = torchvision_ops_loadable()
    applied = ensure_torchvision_importable()
    assert applied == (loadable is False), (applied, loadable)
    import torch, torchvision, timm
    from transformers import CLIPVisionModel, LlavaForConditionalGeneration
    if applied:
        keep = torch.ops.torchvision.nms(torch.tensor([[0., 0, 1, 1], [0, 0, 1, 1.1], [2, 2, 3, 3]]),
                                         torch.tensor([0.5, 0.9, 0.1]), 0.5)
        assert keep.tolist() == [1, 2], keep
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, num_classes=0)
    print("OK", applied, torchvision.__version__, m(torch.zeros(1, 3, 224, 224)).shape[-1])
""")


def test_recipe_in_fresh_interpreter():
    """import torchvision / timm / transformers models works after the fix (fresh process, since
    torchvision can only be imported once per process)."""
    pytest.importorskip("timm")
    res = subprocess.run([sys.executable, "-c", RECIPE], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("OK"), res.stdout
    assert res.stdout.strip().endswith("192")


def test_without_fix_the_import_fails_when_ops_cannot_load():
    """Documents the trap the fix solves (only meaningful where torchvision's ops cannot load)."""
    pytest.importorskip("timm")
    if torchvision_ops_loadable() is not False:
        pytest.skip("torchvision's compiled ops load here; nothing to fix")
    code = "import torchvision"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__('os').environ, "ARRCOC_NO_TORCHVISION_COMPAT": "1"})
    assert res.returncode != 0 and "torchvision::nms does not exist" in res.stderr
