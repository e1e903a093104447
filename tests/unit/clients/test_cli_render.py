"""The CLI's plain output against the docker CLI's: table layout, ages, and the rows
`docker image ls` makes of an image's tags and digests."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from imagesvc_client.cli.commands import image_rows
from imagesvc_client.cli.render import human_age, print_table
from imagesvc_client.v1 import image_pb2

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def test_tables_are_laid_out_like_the_docker_cli() -> None:
    # docker's tabwriter: each cell padded by 3, at least 10 wide; the last one not padded.
    out = io.StringIO()
    print_table(["REPOSITORY", "TAG", "SIZE"], [["team/app", "1.0", "1.99MB"]], out)
    assert out.getvalue().splitlines() == [
        "REPOSITORY   TAG       SIZE",
        "team/app     1.0       1.99MB",
    ]


@pytest.mark.parametrize(
    ("age", "shown"),
    [
        (timedelta(seconds=0.5), "Less than a second ago"),
        (timedelta(seconds=1), "1 second ago"),
        (timedelta(seconds=59), "59 seconds ago"),
        (timedelta(seconds=90), "About a minute ago"),
        (timedelta(minutes=59), "59 minutes ago"),
        (timedelta(minutes=89), "About an hour ago"),
        # Go rounds half hours up (int(hours + 0.5)), Python's round() to even.
        (timedelta(hours=2, minutes=30), "3 hours ago"),
        (timedelta(hours=47), "47 hours ago"),
        (timedelta(days=3), "3 days ago"),
        (timedelta(days=20), "2 weeks ago"),
        (timedelta(days=90), "3 months ago"),
        (timedelta(days=800), "2 years ago"),
    ],
)
def test_ages_read_like_the_docker_cli(age: timedelta, shown: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    created = Timestamp()
    created.FromDatetime(now - age)
    assert human_age(created, now) == shown


def _image(tags: list[str], digests: list[str]) -> image_pb2.Image:
    return image_pb2.Image(id="sha256:" + "c" * 64, repo_tags=tags, repo_digests=digests)


def test_an_image_pulled_by_digest_shows_its_repository() -> None:
    image = _image([], [f"127.0.0.1:5000/team/app@{DIGEST_A}"])
    assert image_rows(image, digests=False) == [("127.0.0.1:5000/team/app", "<none>", "<none>")]
    assert image_rows(image, digests=True) == [("127.0.0.1:5000/team/app", "<none>", DIGEST_A)]


def test_tags_and_digests_of_several_repositories() -> None:
    image = _image(
        ["team/app:1", "team/app:2", "127.0.0.1:5000/team/app:1"],
        [f"127.0.0.1:5000/team/app@{DIGEST_A}", f"127.0.0.1:6000/mirror/app@{DIGEST_B}"],
    )
    assert image_rows(image, digests=False) == [
        ("team/app", "1", "<none>"),
        ("team/app", "2", "<none>"),
        ("127.0.0.1:5000/team/app", "1", "<none>"),
        ("127.0.0.1:6000/mirror/app", "<none>", "<none>"),
    ]
    assert image_rows(image, digests=True) == [
        ("team/app", "1", "<none>"),
        ("team/app", "2", "<none>"),
        ("127.0.0.1:5000/team/app", "1", DIGEST_A),
        ("127.0.0.1:6000/mirror/app", "<none>", DIGEST_B),
    ]


def test_a_dangling_image_is_none_everywhere() -> None:
    expected = [("<none>", "<none>", "<none>")]
    assert image_rows(_image([], []), digests=True) == expected
    assert image_rows(_image(["<none>:<none>"], ["<none>@<none>"]), digests=False) == expected
