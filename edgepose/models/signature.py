"""State-dict signatures, as in the reference manifests.

SHA-256 over UTF-8 lines ``key<TAB>comma-joined shape<TAB>dtype<LF>`` (scalar shape = "").
Variants: ``ordered_all`` (state_dict order, every entry), ``ordered_no_nbt`` (without
``*.num_batches_tracked``) and ``sorted_no_nbt`` (sorted lines, without them).
"""
from __future__ import annotations

import hashlib

VARIANTS = ("ordered_all", "ordered_no_nbt", "sorted_no_nbt")


def _dtype_name(tensor) -> str:
    return str(tensor.dtype).replace("torch.", "")


def signature_lines(entries, variant: str = "ordered_all") -> list[str]:
    """``entries``: iterable of (key, shape, dtype-name) or a state_dict (key -> tensor)."""
    if hasattr(entries, "items"):
        entries = [(k, tuple(v.shape), _dtype_name(v)) for k, v in entries.items()]
    if variant not in VARIANTS:
        raise ValueError(f"unknown signature variant {variant!r}; use one of {VARIANTS}")
    lines = [f"{k}\t{','.join(str(int(d)) for d in shape)}\t{dtype}\n" for k, shape, dtype in entries
             if variant == "ordered_all" or not k.endswith("num_batches_tracked")]
    return sorted(lines) if variant == "sorted_no_nbt" else lines


def signature(entries, variant: str = "ordered_all") -> str:
    return hashlib.sha256("".join(signature_lines(entries, variant)).encode()).hexdigest()


def manifest_entries(manifest: dict, strip_prefix: str = "") -> list[tuple]:
    """(key, shape, dtype) rows of a reference manifest, optionally without a key prefix."""
    rows = []
    for e in manifest["state_dict"]:
        key = e["key"][len(strip_prefix):] if strip_prefix and e["key"].startswith(strip_prefix) else e["key"]
        rows.append((key, tuple(e["shape"]), e["dtype"]))
    return rows
