"""The decode and encode stages of a restoration job under one name: bytes <-> float RGB arrays.

The stages live in ``workers.decoding`` (untrusted bytes -> pixels and metadata, every failure
``InvalidImage``), ``workers.encoding`` (pixels and the input's metadata -> bytes in the output
format), ``workers.png16`` (16-bit PNG writing) and ``workers.image_types`` (what they hand each
other). This module re-exports their public names for the callers that import them from here:
``benchmarks.throughput`` and ``tests/workers/test_bad_input.py``.
"""

from __future__ import annotations

from workers.decoding import decode
from workers.encoding import encode, output_format
from workers.image_types import DecodedImage, EncodedImage

__all__ = ["DecodedImage", "EncodedImage", "decode", "encode", "output_format"]
