from __future__ import annotations

from imagesvc.core.build_log import BuildLog
from imagesvc.core.errors import FailedPreconditionError, NotFoundError, Reason

IMAGE_ID = "sha256:" + "ab" * 32
STEP_FAILED = "The command '/bin/sh -c false' returned a non-zero code: 1"


def test_stream_and_status_text_is_passed_on() -> None:
    log = BuildLog()
    assert log.feed({"stream": "Step 1/2 : FROM busybox\n"}) == "Step 1/2 : FROM busybox\n"
    assert log.feed({"status": "Pulling from library/busybox"}) == "Pulling from library/busybox"


def test_messages_without_text_pass_nothing_on() -> None:
    log = BuildLog()
    assert log.feed({"aux": {"ID": IMAGE_ID}}) is None
    assert log.feed({"stream": ""}) is None
    assert log.feed({"progressDetail": {}}) is None


def test_the_image_id_comes_from_the_aux_message() -> None:
    log = BuildLog()
    assert log.image_id == ""
    log.feed({"stream": "Successfully built abcdef012345\n"})
    assert log.image_id == ""  # never scraped from the log text
    log.feed({"aux": {"ID": IMAGE_ID}})
    assert log.image_id == IMAGE_ID


def test_the_last_step_of_a_multi_line_message_is_noted() -> None:
    log = BuildLog()
    log.feed({"stream": "Step 1/3 : FROM busybox\n ---> abc\nStep 2/3 : RUN make\n"})
    assert log.last_step == "Step 2/3 : RUN make"
    log.feed({"stream": " ---> Running in 111111111111\n"})
    assert log.last_step == "Step 2/3 : RUN make"


def test_a_failed_step_names_the_step() -> None:
    log = BuildLog()
    log.feed({"stream": "Step 2/3 : RUN false\n"})
    error = log.explained(FailedPreconditionError(STEP_FAILED, reason=Reason.BUILD_FAILED))
    assert type(error) is FailedPreconditionError
    assert error.reason is Reason.BUILD_FAILED
    assert error.message == f"Step 2/3 : RUN false: {STEP_FAILED}"


def test_other_errors_and_failures_before_any_step_are_unchanged() -> None:
    log = BuildLog()
    before_any_step = FailedPreconditionError(STEP_FAILED, reason=Reason.BUILD_FAILED)
    assert log.explained(before_any_step) is before_any_step
    log.feed({"stream": "Step 1/1 : FROM nope\n"})
    missing = NotFoundError("manifest unknown", reason=Reason.IMAGE_NOT_FOUND)
    assert log.explained(missing) is missing
