# SPDX-License-Identifier: MIT
"""Reading the arguments of a torch call that a `TorchFunctionMode` intercepted.

The modes of the toolkit (WBP's rules, the double-backward Functions, Inception's fast pools) see
each call as `(func, args, kwargs)` exactly as the caller wrote it: an argument may come by
position or by name, and a size as an int or a pair.
"""

from __future__ import annotations

from typing import Any

__all__ = ["call_arg", "pair", "avg_pool2d_args"]


def call_arg(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    """Argument `name` of a call, given at position `index` or by name, else `default`."""
    return args[index] if len(args) > index else kwargs.get(name, default)


def pair(v: Any, default: Any = None) -> list[int]:
    """A 2-D size (`3`, `(3, 3)` or `[3, 3]`) as `[h, w]`; None takes `default`."""
    if v is None:
        v = default
    return [int(v), int(v)] if isinstance(v, int) else [int(i) for i in v]


def avg_pool2d_args(args: tuple, kwargs: dict) -> tuple[list[int], list[int], list[int], bool, bool, object]:
    """`F.avg_pool2d`'s kernel, stride (default: the kernel), padding, ceil_mode, count_include_pad, divisor."""
    kernel = pair(call_arg(args, kwargs, 1, "kernel_size", None))
    stride = pair(call_arg(args, kwargs, 2, "stride", None) or kernel)
    padding = pair(call_arg(args, kwargs, 3, "padding", 0))
    return (kernel, stride, padding, bool(call_arg(args, kwargs, 4, "ceil_mode", False)),
            bool(call_arg(args, kwargs, 5, "count_include_pad", True)),
            call_arg(args, kwargs, 6, "divisor_override", None))
