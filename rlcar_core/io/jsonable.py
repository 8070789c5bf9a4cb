"""The one JSON coercer: metrics, configs and CLI results as plain, strict JSON values.

Nothing here imports JAX (the CLI uses it for `--json`); numpy is enough to read JAX arrays.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from typing import Any

import numpy as np


def to_json_value(value: Any) -> Any:
    """numpy/JAX scalars and arrays, paths, enums and dataclasses -> plain Python that `json` accepts.

    Non-finite floats become None, so files stay standard JSON (no `NaN`/`Infinity` that other
    readers reject). Anything else raises TypeError naming its type, before any file is touched.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return to_json_value(value.value)
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_value(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json_value(dataclasses.asdict(value))
    if isinstance(value, np.generic) or hasattr(value, "__array__"):
        return to_json_value(np.asarray(value).tolist())
    raise TypeError(f"cannot store a {type(value).__name__} as JSON")
