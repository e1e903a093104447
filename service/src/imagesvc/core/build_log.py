"""What a build's Engine messages tell the core: the log text to pass on, the step the
build is in, and the id of the image it made (beside progress.py, which does the same
for the layers of a pull or push)."""

from __future__ import annotations

import re

from imagesvc.core.errors import ImageServiceError, Reason
from imagesvc.core.port import JsonDocument

# The classic builder announces each step as "Step 2/3 : RUN make", buildah (Podman) as
# "STEP 2/3: RUN make"; one message may carry several lines.
_STEP_LINE = re.compile(r"^(?:Step \d+/\d+ :|STEP \d+/\d+:) .*$", re.MULTILINE)


class BuildLog:
    """Reads a build's Engine messages in order (error lines never reach it: the Engine
    stream raises them as core errors)."""

    def __init__(self) -> None:
        self.last_step = ""
        self.image_id = ""

    def feed(self, message: JsonDocument) -> str | None:
        """The message's log text, if it has any; notes the step and the image id."""
        aux = message.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            self.image_id = str(aux["ID"])
        text = message.get("stream") or message.get("status")
        if not text:
            return None
        text = str(text)
        steps = _STEP_LINE.findall(text)
        if steps:
            self.last_step = steps[-1]
        return text

    def explained(self, error: ImageServiceError) -> ImageServiceError:
        """A failed step's error names the step: the Engine's own message only says that
        a command returned a non-zero code."""
        if self.last_step and error.reason is Reason.BUILD_FAILED:
            return error.with_message(f"{self.last_step.strip()}: {error.message}")
        return error
