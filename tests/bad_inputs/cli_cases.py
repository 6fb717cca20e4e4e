"""CLI cases: ``arrcoc.cli.main([...])`` with bad arguments exits non-zero with exactly one error line
and no traceback (argparse's usage line may precede the error line)."""
from __future__ import annotations

import contextlib
import io

from hypothesis import strategies as st

from . import Case

BAD_ARGV = {
    "--budget": ["abc", "-5", "0", "10", "640.5", "nan"],
    "--grid": ["0", "-1", "x", "2.5"],
    "--rounds": ["0", "-3", "x"],
    "--seed": ["x", "1.5"],
    "--max-pixels": ["-1", "0", "x"],
    "--query": ["", "   "],
    "--policy": ["nope"],
}


def run_main(argv):
    from arrcoc.cli import main
    err, out = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own errors
            code = e.code
    text = err.getvalue()
    assert code not in (0, None), f"arrcoc {' '.join(argv)} exited with {code!r}; stderr {text!r}"
    assert "Traceback" not in text, f"arrcoc {' '.join(argv)} printed a traceback:\n{text}"
    lines = [ln for ln in text.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, f"arrcoc {' '.join(argv)}: expected one error line, got {text!r}"


def image_case(values, name):
    return Case("arrcoc.cli.main", "IMAGE", lambda v: run_main(["allocate", v, "--out", "/tmp/arrcoc-never.png"]),
                st.sampled_from(values), name=name, examples=len(values), finite=False)


CASES = [
    *[Case("arrcoc.cli.main", flag, (lambda f: lambda v: run_main(["allocate", "sample", f, v, "--out", "/tmp/arrcoc-never.png"]))(flag),
           st.sampled_from(vals), examples=len(vals), finite=False) for flag, vals in BAD_ARGV.items()],
    image_case(["/nonexistent/image.png", "/tmp", "/etc/hostname", ""], "image"),
    Case("arrcoc.cli.main", "command", lambda v: run_main(v), st.sampled_from([[], ["nope"], ["allocate"], ["demo", "--port", "x"]]),
         examples=4, finite=False),
]

EXEMPT: dict[str, str] = {}

XFAIL: dict[str, str] = {}
