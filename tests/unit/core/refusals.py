"""What a policy check refuses, as a value a test can assert on."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec

from imagesvc.core.errors import PermissionDeniedError

P = ParamSpec("P")


def refusal(
    check: Callable[P, object], *args: P.args, **kwargs: P.kwargs
) -> PermissionDeniedError | None:
    """The PERMISSION_DENIED error `check(*args, **kwargs)` raises; None when it allows."""
    try:
        check(*args, **kwargs)
    except PermissionDeniedError as error:
        return error
    return None
