"""Gradio demo: see where ARR-COC puts the visual tokens of an image for a question.

Launch (127.0.0.1, offline, pretrained default; ``--checkpoint DIR`` loads a saved model instead):

    arrcoc demo            or            python -m demo [--port 7860] [--checkpoint DIR]

- ``DemoEngine``: the model (loaded once per process) and one ``run`` per button press: checks the
  inputs with the CLI's checks (``arrcoc.cli``), allocates with the chosen policy and renders the
  panels with ``arrcoc.visualize``. Bad input raises ``InputError``; the UI shows its message and
  stays usable.
- ``build_app(engine)``: the Blocks layout; ``launch(...)``: load, build, serve.

Gradio is kept offline: analytics off, no share link, no server-side rendering, system fonts only
(the default theme would load web fonts).
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from arrcoc.cli import (DEFAULT_QUESTION, MAX_IMAGE_PIXELS, POLICIES, InputError, check_budget,  # noqa: E402
                        check_question, load_image, load_model, model_notes, question_truncation,
                        run_allocation)
from arrcoc.visualize import compare_figure, figure_to_image, panel_images  # noqa: E402

__all__ = ["DemoEngine", "DemoResult", "build_app", "launch", "main", "POLICY_LABELS"]

log = logging.getLogger("arrcoc.demo")

POLICY_LABELS = [label for label, _ in POLICIES.values()]
_KEY_OF_LABEL = {label: key for key, (label, _) in POLICIES.items()}
TABLE_HEADERS = ["region", "row", "col", "box (x0,y0,x1,y1)", "tokens", "rel. mean", "rel. sd", "epistemic sd"]


class DemoResult(dict):
    """Outputs of one run: status, overlay, mean, epistemic_sd, table, tokens, comparison, comparison_text,
    views (the AllocationView of each question)."""


class DemoEngine:
    """Model + processor (loaded once) and the checks and rendering of one request."""

    def __init__(self, model, processor, sample_path: str | Path | None = None,
                 max_pixels: int = MAX_IMAGE_PIXELS):
        from arrcoc.assets import sample_image_path

        self.model, self.processor = model, processor
        self.sample_path = Path(sample_path) if sample_path is not None else sample_image_path()
        self.max_pixels = int(max_pixels)
        cfg = model.config
        self.levels = tuple(int(v) for v in cfg.levels)
        self.global_tokens = int(cfg.global_tokens)
        self.full_detail = self.global_tokens + cfg.grid * cfg.grid * max(self.levels)
        self.default_budget = int(min(cfg.budget, self.full_detail))

    def image(self, file):
        """The uploaded file (a path, or an object with .name) or, when none, the bundled sample."""
        if file is None or file == "":
            return load_image(self.sample_path, max_pixels=self.max_pixels, name="image"), "bundled sample scene"
        path = getattr(file, "name", file)
        return load_image(path, max_pixels=self.max_pixels, name="uploaded file"), Path(path).name

    def run(self, file, question, question2="", budget=None, policy="ARR-COC Thompson", seed=0) -> DemoResult:
        """One request -> DemoResult. Raises InputError for bad input (nothing is computed then)."""
        q1 = check_question(question, name="question")
        q2 = (question2 or "").strip()
        budget = self.default_budget if budget is None else budget
        if isinstance(budget, float) and budget.is_integer():
            budget = int(budget)
        check_budget(budget, self.model.config, name="budget", need_region=True)
        if policy not in _KEY_OF_LABEL:
            raise InputError(f"policy must be one of {POLICY_LABELS}, got {policy!r}")
        try:
            seed = int(seed if seed is not None else 0)
        except (TypeError, ValueError):
            raise InputError(f"seed must be a whole number, got {seed!r}") from None
        image, source = self.image(file)
        key = _KEY_OF_LABEL[policy]
        warn1 = question_truncation(self.model, q1, name="question")
        warn2 = question_truncation(self.model, q2, name="second question") if q2 else None
        view = run_allocation(self.model, self.processor, image, q1, budget, key, seed)
        notes = [w for w in (warn1, warn2) if w] + model_notes(view.notes, truncation_warned=bool(warn1))
        t0 = time.perf_counter()
        panels = panel_images(view)
        res = DemoResult(views=[view], overlay=panels["overlay"], mean=panels["mean"],
                         epistemic_sd=panels["epistemic_sd"], comparison=None, comparison_text="")
        res["table"] = [[r["region"], r["row"], r["col"], "({},{},{},{})".format(*r["box"]), r["tokens"],
                         round(r["mean"], 3), round(r["sd"], 3), round(r["epistemic_sd"], 3)] for r in view.rows()]
        if q2:
            view2 = run_allocation(self.model, self.processor, image, q2, budget, key, seed)
            notes += [n for n in model_notes(view2.notes, truncation_warned=bool(warn2)) if n not in notes]
            res["views"].append(view2)
            res["comparison"] = figure_to_image(compare_figure(view, view2))
            res["comparison_text"] = (f"**Q1** {view.total_tokens} tokens, **Q2** {view2.total_tokens} tokens; "
                                      f"regions whose tokens differ: {int((view.allocation != view2.allocation).sum())}"
                                      f" of {view.num_regions}")
        render_ms = 1000 * (time.perf_counter() - t0)
        res["tokens"] = (f"**{view.total_tokens} visual tokens** ({view.global_tokens} global + {view.region_tokens} "
                         f"in regions) · budget {view.budget} · full detail {self.full_detail} "
                         f"({100 * view.total_tokens / self.full_detail:.1f} % of it) · latency "
                         f"{1000 * view.latency_s:.0f} ms (+ {render_ms:.0f} ms drawing) · {view.policy}, seed {seed}")
        status = f"Done: {source}, {image.size[0]}x{image.size[1]} px, question {q1!r}."
        res["status"] = status + "".join(f"\n\n**Note:** {n}" for n in notes)
        return res


def _outputs_of(res: DemoResult | None, message: str):
    import gradio as gr

    if res is None:  # bad input: clear the result panels so nothing stale is mistaken for an answer
        return (message, "", None, None, None, None, gr.update(value=None, visible=False), "")
    return (res["status"], res["tokens"], res["overlay"], res["mean"], res["epistemic_sd"],
            _table(res["table"]), gr.update(value=res["comparison"], visible=res["comparison"] is not None),
            res["comparison_text"])


def _table(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=TABLE_HEADERS)


def build_app(engine: DemoEngine):
    """The Gradio Blocks app around ``engine``."""
    import gradio as gr

    def on_run(file, q1, q2, budget, policy, seed):
        try:
            return _outputs_of(engine.run(file, q1, q2, budget, policy, seed), "")
        except InputError as e:
            return _outputs_of(None, f"**Error:** {e}")
        except Exception as e:  # a bug, not the user's fault: say so, log it, keep serving
            log.exception("demo request failed")
            return _outputs_of(None, f"**Internal error:** {type(e).__name__}: {e}")

    def on_resample(seed):
        try:
            seed = int(seed) + 1
        except (TypeError, ValueError):
            seed = 1
        return seed, POLICIES["thompson"][0]

    lv = "/".join(str(v) for v in engine.levels)
    with gr.Blocks(title="ARR-COC demo", analytics_enabled=False) as app:
        gr.Markdown("## ARR-COC: where do the visual tokens go?\n"
                    f"Each of the {engine.model.config.grid}x{engine.model.config.grid} regions gets {lv} tokens "
                    f"from a Bayesian relevance posterior, under a total budget that includes the "
                    f"{engine.global_tokens}-token global view. Leave the upload empty to use the bundled scene.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                upload = gr.File(label="Image file (PNG/JPEG/...; empty = bundled sample scene)", type="filepath",
                                 elem_id="upload")
                sample_btn = gr.Button("Use the bundled sample", size="sm", elem_id="sample-btn")
                q1 = gr.Textbox(value=DEFAULT_QUESTION, label="Question", elem_id="question")
                q2 = gr.Textbox(value="", label="Second question (optional: compare on the same image)",
                                placeholder="e.g. What does the stop sign say?", elem_id="question2")
                budget = gr.Slider(0, engine.full_detail, value=engine.default_budget, step=1,
                                   label=f"Token budget (max = full detail, {engine.full_detail})",
                                   info=f"full detail = every region at {max(engine.levels)} + the global view "
                                        f"= {engine.full_detail} tokens", elem_id="budget")
                full_btn = gr.Button(f"Set budget to full detail ({engine.full_detail})", size="sm")
                policy = gr.Radio(POLICY_LABELS, value=POLICY_LABELS[0], label="Policy", elem_id="policy")
                seed = gr.Number(value=0, precision=0, label="Seed (Thompson draw / random)", elem_id="seed")
                with gr.Row():
                    run_btn = gr.Button("Allocate", variant="primary", elem_id="run-btn")
                    resample_btn = gr.Button("Resample (new Thompson draw)", elem_id="resample-btn")
            with gr.Column(scale=3):
                status = gr.Markdown("Press **Allocate**.", elem_id="status")
                tokens = gr.Markdown("", elem_id="tokens")
                with gr.Row():
                    overlay = gr.Image(label="Allocation: tokens per region, coloured by level", type="pil",
                                       format="png", interactive=False, elem_id="overlay", scale=3)
                    with gr.Column(scale=2, min_width=240):
                        mean = gr.Image(label="Relevance posterior mean (logit)", type="pil", format="png",
                                        interactive=False, elem_id="heatmap-mean")
                        sd = gr.Image(label="Epistemic uncertainty (sd of the logit)", type="pil", format="png",
                                      interactive=False, elem_id="heatmap-sd")
                table = gr.Dataframe(headers=TABLE_HEADERS, label="Per-region table", interactive=False,
                                     elem_id="regions")
                comparison = gr.Image(label="Two questions, same image", type="pil", format="png",
                                      interactive=False, visible=False, elem_id="comparison")
                comparison_text = gr.Markdown("", elem_id="comparison-text")
        inputs = [upload, q1, q2, budget, policy, seed]
        outputs = [status, tokens, overlay, mean, sd, table, comparison, comparison_text]
        run_btn.click(on_run, inputs, outputs)
        q1.submit(on_run, inputs, outputs)
        resample_btn.click(on_resample, [seed], [seed, policy]).then(on_run, inputs, outputs)
        sample_btn.click(lambda: None, None, upload)
        full_btn.click(lambda: engine.full_detail, None, budget)
    return app


def _theme():
    import gradio as gr

    system = ["ui-sans-serif", "system-ui", "sans-serif"]
    return gr.themes.Default(font=system, font_mono=["ui-monospace", "monospace"])


def launch(checkpoint: str | None = None, host: str = "127.0.0.1", port: int = 7860, block: bool = True,
           engine: DemoEngine | None = None):
    """Load the model (once), build the app and serve it on host:port. Returns the app."""
    import inspect

    if engine is None:
        model, processor = load_model(checkpoint)
        engine = DemoEngine(model, processor)
    app = build_app(engine)
    kw = dict(server_name=host, server_port=port, share=False, prevent_thread_lock=not block, show_error=True,
              quiet=False)
    params = inspect.signature(app.launch).parameters
    if "ssr_mode" in params:
        kw["ssr_mode"] = False
    if "theme" in params:  # Gradio 6 takes the theme at launch; 4/5 at Blocks() (set below)
        kw["theme"] = _theme()
    else:
        app.theme = _theme()
    print(f"ARR-COC demo on http://{host}:{port} (Ctrl-C to stop)", flush=True)
    app.launch(**kw)
    return app


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo", description="ARR-COC Gradio demo (offline, 127.0.0.1)")
    p.add_argument("--checkpoint", default=None, help="folder saved by save_pretrained (default: pretrained default)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        launch(args.checkpoint, args.host, args.port)
    except (InputError, ImportError, OSError) as e:
        print(f"demo: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0
