"""Bad-input cases of arrcoc.modeling, backbones, adapters, assets and visualize (owned by others; failing
cases are strict xfails). Models are tiny random-weight ones built from real transformers classes."""
from __future__ import annotations

import functools

import torch

from . import (keyword_cases, BAD_BOOL, BAD_CALLABLE, BAD_COUNT, BAD_INT, BAD_POSITIVE, BAD_PROB, BAD_REAL, BAD_STR, BAD_TENSOR, OPAQUE,
               Case, bad_tensor, resolve)
from hypothesis import strategies as st


def obj(path):
    return resolve("arrcoc." + path)


@functools.lru_cache(maxsize=1)
def tiny_model():
    from tests.modeling.conftest import tiny_model as build
    return build()


def pixels():
    return torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))


kw = keyword_cases("arrcoc.", examples=4)


def view():
    from arrcoc.visualize import AllocationView
    return AllocationView(**view_kwargs())


def view_kwargs():
    from PIL import Image
    boxes = obj("modeling.grid_boxes")(64, 64, 2)[0]
    return dict(image=Image.new("RGB", (64, 64)), question="q", boxes=boxes, allocation=torch.tensor([0, 4, 16, 36]),
                mean=torch.zeros(4), var=torch.ones(4), epistemic_var=torch.ones(4), grid=2, levels=(0, 4, 16, 36),
                global_tokens=16, budget=120)


BAD_PIXEL_DTYPE = st.sampled_from([torch.float64, torch.float16]).map(lambda dt: pixels().to(dt))
NON_INT = st.sampled_from([640.7, 100.5, "640", None, -8, 0])

CASES = [
    # ------------------------------------------------------------------------------------ modeling
    kw("modeling.ARRCOCVisionConfig", {}, "budget", NON_INT),
    kw("modeling.ARRCOCVisionConfig", {}, "levels", st.sampled_from([(0, 64.5, 100), (0, -64), ("a",), None, OPAQUE]),
       name="levels"),
    kw("modeling.ARRCOCVisionConfig", {}, "grid", BAD_COUNT, name="grid"),
    kw("modeling.ARRCOCVisionConfig", {}, "concept_side", st.one_of(BAD_INT, st.integers(max_value=-1)),
       name="concept_side"),
    kw("modeling.ARRCOCVisionModel", {}, "config", BAD_TENSOR),
    kw("modeling.modeling_arrcoc.ARRCOCPreTrainedModel", {}, "config", BAD_TENSOR),
    Case("arrcoc.modeling.ARRCOCVisionModel.forward", "pixel_values",
         lambda v: tiny_model()(pixel_values=v, queries=["q"], deterministic=True),
         bad_tensor((1, 3, 128, 128), dtype=torch.float32, wrong_shapes=[(3, 128, 128), (1, 1, 128, 128)]), examples=4),
    Case("arrcoc.modeling.ARRCOCVisionModel.forward", "pixel_values",
         lambda v: tiny_model()(pixel_values=v, queries=["q"], deterministic=True), BAD_PIXEL_DTYPE, name="dtype", examples=2),
    Case("arrcoc.modeling.ARRCOCVisionModel.forward", "budget",
         lambda v: tiny_model()(pixel_values=pixels(), queries=["q"], budget=v, deterministic=True), NON_INT, name="budget"),
    kw("modeling.ARRCOCImageProcessor", {}, "size", BAD_COUNT),
    Case("arrcoc.modeling.ARRCOCImageProcessor.__call__", "images", lambda v: obj("modeling.ARRCOCImageProcessor")(size=64)(v),
         BAD_TENSOR),
    kw("modeling.grid_boxes", {"height": 64, "width": 64, "grid": 2}, "grid", BAD_COUNT),
    kw("modeling.load_default_model", {}, "grid", BAD_COUNT, examples=2),
    kw("modeling.regions.grid_edges", {"size": 64, "grid": 2}, "grid", BAD_COUNT),
    kw("modeling.regions.crop_resize", lambda: {"images": pixels(), "batch_index": torch.zeros(4, dtype=torch.long),
                                                "boxes": obj("modeling.grid_boxes")(128, 128, 2)[0], "size": 16},
       "size", BAD_COUNT),
    kw("modeling.regions.token_centres", lambda: {"boxes": obj("modeling.grid_boxes")(128, 128, 2)[0], "side": 2, "height": 128,
                                                  "width": 128}, "side", BAD_COUNT),
    kw("modeling.regions.sincos_2d", lambda: {"xy": torch.rand(4, 2), "dim": 8}, "dim", BAD_COUNT),
    kw("modeling.regions.level_side", {}, "level", BAD_COUNT),
    # ----------------------------------------------------------------------------------- backbones
    kw("backbones.HFVisionBackbone", {}, "model", BAD_TENSOR),
    kw("backbones.TimmBackbone", {}, "name", BAD_STR),
    kw("backbones.ByteQueryEncoder", {}, "dim", BAD_COUNT),
    kw("backbones.scene_text.SceneTextReader", {}, "threads", BAD_COUNT),
    kw("backbones.scene_text.SceneTextReader", {}, "min_confidence", BAD_PROB, name="min_confidence"),
    Case("arrcoc.backbones.scene_text.SceneTextReader.read", "image",
         lambda v: obj("backbones.scene_text.SceneTextReader")().read(v), BAD_TENSOR),
    kw("backbones.HFTextQueryEncoder", {}, "config", BAD_TENSOR),
    kw("backbones.build_backbone", {}, "spec", BAD_TENSOR),
    kw("backbones.build_query_encoder", {}, "spec", BAD_TENSOR),
    kw("backbones.tokens_to_grid", lambda: {"tokens": torch.zeros(1, 16, 8), "side_h": 4, "side_w": 4}, "grid", BAD_COUNT),
    kw("backbones.hf_vision_config", {}, "config", BAD_TENSOR),
    kw("backbones.load_efficientnet_lite0_weights", {}, "model", BAD_TENSOR),
    kw("backbones.text.sincos_1d", {"length": 4, "dim": 8}, "length", BAD_COUNT),
    kw("modeling.zero_shot.build_concept_scorer", {"query_encoder": None}, "backbone_spec", BAD_TENSOR, examples=3),
    kw("modeling.zero_shot.label_embeddings", {}, "encoder", BAD_TENSOR, examples=3),
    kw("modeling.zero_shot.imagenet_label_texts", {}, "max_synonyms", BAD_COUNT, finite=False),  # was relevance.concept's
    # ------------------------------------------------------------------------------------ adapters
    kw("adapters.LlavaARRCOCAdapter", lambda: {"encoder": tiny_model()}, "model", BAD_TENSOR),
    kw("adapters.Qwen2VLARRCOCAdapter", lambda: {"encoder": tiny_model()}, "model", BAD_TENSOR),
    kw("adapters.ARRCOCProjector", {"in_dim": 8, "out_dim": 8}, "in_dim", BAD_COUNT),
    kw("adapters.base.check_prompts", {"batch": 1, "image_token_id": 5}, "prompt_ids", BAD_TENSOR, finite=False),
    kw("adapters.base.left_pad", {"pad_id": 0}, "rows", BAD_TENSOR),
    # ------------------------------------------------------------------------------ assets, visualize
    kw("assets.make_sample.make_sample_scene", {}, "width", BAD_COUNT),
    kw("visualize.AllocationView", view_kwargs, "boxes", BAD_TENSOR),
    kw("visualize.level_colours", {}, "levels", BAD_TENSOR, finite=False),
    kw("visualize.level_handles", {}, "levels", BAD_TENSOR, finite=False),
    kw("visualize.overlay_figure", {}, "view", BAD_TENSOR),
    kw("visualize.compare_figure", lambda: {"view_a": view()}, "view_b", BAD_TENSOR),
    kw("visualize.panel_images", {}, "view", BAD_TENSOR),
    kw("visualize.figure_to_image", {}, "fig", BAD_TENSOR),
    kw("visualize.save_figure", {"path": "/tmp/never-written.png"}, "fig", BAD_TENSOR),
    kw("visualize.draw_allocation", {"ax": None}, "view", BAD_TENSOR),
    kw("visualize.draw_heatmap", lambda: {"ax": None, "view": view(), "title": "t", "cmap": "viridis", "vmin": 0.0, "vmax": 1.0,
                                          "label": "l"}, "values", BAD_TENSOR),
    # ------------------------------------------------------------------------------ cli functions
    kw("cli.load_image", {}, "source", BAD_TENSOR),
    kw("cli.check_question", {"name": "question"}, "question", st.sampled_from(["", "   ", None, 3, OPAQUE]), finite=False),
    kw("cli.check_budget", lambda: {"config": tiny_model().config}, "budget", NON_INT, finite=False),
    kw("cli.question_truncation", lambda: {"model": tiny_model()}, "question", st.sampled_from([None, 3, OPAQUE]), finite=False),
    kw("cli.model_notes", {"truncation_warned": False}, "notes", st.sampled_from([None, 3, OPAQUE]), finite=False),
    kw("cli.load_model", {}, "checkpoint", st.sampled_from(["/nonexistent/ckpt", 3, OPAQUE]), examples=3),
    kw("cli.model_config", {}, "grid", BAD_COUNT, examples=3),
    kw("cli.run_allocation", lambda: {"model": tiny_model(), "processor": obj("modeling.ARRCOCImageProcessor")(size=128),
                                      "image": view_kwargs()["image"], "question": "q"}, "budget", NON_INT),
    kw("cli.allocate", {"image_path": "sample", "query": "q", "out": None}, "budget", NON_INT, examples=3),
]

EXEMPT = {
    "arrcoc.modeling.ARRCOCVisionOutput": "result type of ARRCOCVisionModel.forward",
    "arrcoc.modeling.GLOBAL_REGION": "constant (region index of the global view)",
    "arrcoc.modeling.PAD_REGION": "constant (region index of padding)",
    "arrcoc.modeling.configuration_arrcoc.MINILM_L6_CONFIG": "constant (config dict)",
    "arrcoc.modeling.configuration_arrcoc.DEFAULT_BACKBONE": "constant (spec dict)",
    "arrcoc.modeling.configuration_arrcoc.DEFAULT_QUERY_ENCODER": "constant (spec dict)",
    "arrcoc.backbones.VisionBackbone": "abstract base class (subclasses have cases)",
    "arrcoc.backbones.scene_text.TextLine": "NamedTuple result of SceneTextReader.read",
    "arrcoc.backbones.scene_text.scene_text_available": "takes no input (whether the OCR package is installed)",
    "arrcoc.backbones.scene_text.require_scene_text": "takes no input (raises when the OCR package is missing)",
    "arrcoc.backbones.scene_text.OCR_PACKAGE": "constant (package name)",
    "arrcoc.backbones.PretrainedPackageMissing": "exception class",
    "arrcoc.backbones.EFFICIENTNET_PACKAGE": "constant (package name)",
    "arrcoc.backbones.MINILM_PACKAGE": "constant (package name)",
    "arrcoc.backbones.hf.ALWAYS_INTERPOLATING": "constant (model types)",
    "arrcoc.backbones.default_backbone_spec": "takes no arguments",
    "arrcoc.backbones.pretrained.efficientnet_lite0_classifier": "takes no arguments",
    "arrcoc.modeling.zero_shot.cache_dir": "takes no arguments",
    "arrcoc.modeling.zero_shot.ASSET": "constant (asset path)",
    "arrcoc.backbones.default_query_encoder_spec": "takes no arguments",
    "arrcoc.backbones.minilm_path": "takes no arguments",
    "arrcoc.backbones.pretrained.efficientnet_lite0_checkpoint": "takes no arguments",
    "arrcoc.backbones.timm_backbone.import_timm": "takes no arguments",
    "arrcoc.backbones.ensure_torchvision_importable": "takes no arguments",
    "arrcoc.adapters.ARRCOCAdapter": "abstract base class (subclasses have cases)",
    "arrcoc.adapters.AdapterOutput": "result type of the adapters' generate",
    "arrcoc.assets.SAMPLE_IMAGE": "constant (path of the bundled image)",
    "arrcoc.assets.make_sample.SAMPLE_PATH": "constant (path of the bundled image)",
    "arrcoc.assets.sample_image_path": "takes no arguments",
    "arrcoc.cli.build_parser": "takes no arguments (its parser is exercised through main)",
    "arrcoc.cli.InputError": "exception class",
    "arrcoc.cli.POLICIES": "constant (policy table)",
    "arrcoc.cli.MAX_IMAGE_PIXELS": "constant (pixel limit)",
    "arrcoc.cli.DEFAULT_QUESTION": "constant (default question)",
}


# Known findings in the owner's area (case id -> what happens); strict xfails: remove an entry once fixed.
XFAIL = {
}
