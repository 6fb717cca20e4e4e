"""The ARR-COC Gradio demo (see ``demo.app``); run it with ``python -m demo`` or ``arrcoc demo``."""
__all__ = ["app"]
