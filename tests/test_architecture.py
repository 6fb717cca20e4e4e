"""The package's shape: imports point one way, and the toolkit stands alone (docs/design.md, section 1)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "arrcoc"

# Which first-party subpackages each layer may import (its own included). Lower layers never import
# higher ones; the CLI, serving-like entry points and the adapters sit on top. ``_checks`` is a leaf
# (torch and the standard library only) that every layer may use.
LEAF = {"_checks"}
ALLOWED = {k: v | LEAF for k, v in {
    "bayes": {"bayes"},
    "relevance": {"bayes", "relevance"},
    "backbones": {"backbones"},
    "assets": {"assets"},
    "modeling": {"bayes", "relevance", "backbones", "modeling", "assets"},
    "adapters": {"bayes", "relevance", "backbones", "modeling", "adapters", "assets"},
    "serving": {"bayes", "relevance", "backbones", "modeling", "serving", "assets", "visualize"},
    "training": {"bayes", "relevance", "backbones", "modeling", "training", "assets"},
}.items()}


def _first_party_imports(path: Path) -> set[str]:
    """Subpackages of arrcoc that a module imports (absolute and relative imports)."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PKG).parts
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = list(rel[:-1])[: len(rel) - node.level]
                mod = ".".join(["arrcoc", *base] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod]
        else:
            continue
        for n in names:
            parts = n.split(".")
            if parts[0] == "arrcoc" and len(parts) > 1:
                out.add(parts[1])
    return out


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_one_way(layer):
    offenders = {}
    for path in sorted((PKG / layer).rglob("*.py")):
        extra = _first_party_imports(path) - ALLOWED[layer]
        if extra:
            offenders[str(path.relative_to(ROOT))] = sorted(extra)
    assert not offenders, f"{layer} imports layers above it: {offenders}"


def _loaded_after(statement: str) -> list[str]:
    code = (f"import sys; {statement}; "
            "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in ('transformers', 'timm', 'torchvision') "
            "or m.startswith(('arrcoc.backbones', 'arrcoc.modeling', 'arrcoc.adapters'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return [m for m in out.stdout.split() if m]


def test_toolkit_import_loads_no_vision_code():
    loaded = _loaded_after("import arrcoc.bayes, arrcoc.bayes.mcmc, arrcoc.bayes.vi, arrcoc.bayes.compare, "
                           "arrcoc.bayes.conjugate, arrcoc.bayes.laplace, arrcoc.bayes.hierarchical")
    assert loaded == []


def test_relevance_import_loads_no_vision_code():
    assert _loaded_after("import arrcoc.relevance") == []


def test_every_module_declares_all():
    missing = [str(p.relative_to(ROOT)) for p in PKG.rglob("*.py")
               if "__all__" not in p.read_text() and p.name != "__main__.py"]
    assert not missing, f"modules without __all__: {missing}"
