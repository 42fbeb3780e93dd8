"""A deterministic safetensors writer, and the reader: the safetensors package's, else a small one of our own.

The writer puts tensors in name order, header keys sorted, header padded to 8 bytes (the safetensors package
writes `__metadata__` keys in hash order, so its bytes vary from run to run). `safe_open` and `SafetensorError`
are the package's when it is installed; where it is not (a machine without network or pip), `SafetensorsFile`
reads the same files with the same calls, so that loading a model directory needs only torch and numpy.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
           torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def _raw_bytes(tensor: torch.Tensor) -> bytes:
    t = tensor.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {k: str(metadata[k]) for k in sorted(metadata)}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.dtype not in _DTYPES:
            raise ValueError(f"tensor {name!r}: dtype {tensor.dtype} has no safetensors code here")
        blob = _raw_bytes(tensor)
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str] | None = None) -> None:
    Path(path).write_bytes(safetensors_bytes(tensors, metadata))


_NUMPY_TYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<i2", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "?"}
_HEADER_LIMIT = 100 * 1024 * 1024  # the package's own bound on the JSON header


class OwnSafetensorError(ValueError):
    """A file that is not valid safetensors (the package's SafetensorError where the package is missing)."""


class SafetensorsFile:
    """What `safetensors.safe_open(path, framework="pt")` offers: metadata(), keys(), get_tensor(name).

    The whole file is read at open; every tensor's dtype, shape and byte range is checked against the header.
    """

    def __init__(self, path: str | Path, framework: str = "pt") -> None:
        if framework != "pt":
            raise OwnSafetensorError(f"framework: expected \"pt\", got {framework!r}")
        data = Path(path).read_bytes()
        if len(data) < 8:
            raise OwnSafetensorError(f"{path}: {len(data)} bytes, shorter than the 8-byte header length")
        (size,) = struct.unpack("<Q", data[:8])
        if size > min(_HEADER_LIMIT, len(data) - 8):
            raise OwnSafetensorError(f"{path}: header length {size} exceeds the file ({len(data)} bytes)")
        try:
            header = json.loads(data[8:8 + size].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise OwnSafetensorError(f"{path}: header is not JSON: {e}") from e
        if not isinstance(header, dict):
            raise OwnSafetensorError(f"{path}: header: expected a JSON object")
        self._metadata = header.pop("__metadata__", None)
        self._body = memoryview(data)[8 + size:]
        self._entries: dict[str, dict[str, Any]] = {}
        for name, entry in header.items():
            self._entries[name] = self._checked(path, name, entry)

    def _checked(self, path: str | Path, name: str, entry: Any) -> dict[str, Any]:
        try:
            dtype, shape, (begin, end) = entry["dtype"], list(entry["shape"]), entry["data_offsets"]
        except (TypeError, KeyError, ValueError) as e:
            raise OwnSafetensorError(f"{path}: tensor {name!r}: expected dtype, shape and data_offsets") from e
        if dtype not in _NUMPY_TYPES:
            raise OwnSafetensorError(f"{path}: tensor {name!r}: dtype {dtype!r} is not one of {sorted(_NUMPY_TYPES)}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        expected = count * np.dtype(_NUMPY_TYPES[dtype]).itemsize
        if not 0 <= begin <= end <= len(self._body) or end - begin != expected:
            raise OwnSafetensorError(f"{path}: tensor {name!r}: data_offsets [{begin}, {end}] do not hold "
                                     f"{dtype} {shape} ({expected} bytes) inside the {len(self._body)}-byte body")
        return {"dtype": dtype, "shape": shape, "begin": begin, "end": end}

    def __enter__(self) -> "SafetensorsFile":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def metadata(self) -> dict[str, str] | None:
        return self._metadata

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def get_tensor(self, name: str) -> torch.Tensor:
        if name not in self._entries:
            raise OwnSafetensorError(f"no tensor named {name!r}")
        e = self._entries[name]
        array = np.frombuffer(self._body[e["begin"]:e["end"]], dtype=_NUMPY_TYPES[e["dtype"]])
        tensor = torch.from_numpy(array.astype(array.dtype.newbyteorder("=")))  # a native-order, writable copy
        if e["dtype"] == "BF16":
            tensor = tensor.view(torch.bfloat16)
        return tensor.reshape(e["shape"])


try:
    from safetensors import SafetensorError, safe_open
except ImportError:  # the reader above stands in for the package
    SafetensorError = OwnSafetensorError  # type: ignore[misc,assignment]
    safe_open = SafetensorsFile  # type: ignore[assignment]


__all__ = ["OwnSafetensorError", "SafetensorError", "SafetensorsFile", "safe_open", "safetensors_bytes",
           "write_safetensors"]
