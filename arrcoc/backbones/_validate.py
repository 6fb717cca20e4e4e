"""Argument checks for the public boundary of ``arrcoc.backbones``.

The backbones layer imports no other layer of arrcoc (tests/test_architecture.py); its checks come
from the shared leaf module ``arrcoc._checks``.
"""
from __future__ import annotations

from arrcoc._checks import check_int

__all__ = ["check_int"]
