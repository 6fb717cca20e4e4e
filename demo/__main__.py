"""``python -m demo``: launch the Gradio demo on 127.0.0.1 (see demo/app.py)."""
import sys

from demo.app import main

__all__: list = []

sys.exit(main())
