from __future__ import annotations

import pytest

from imagesvc.core.dockerfile_sources import DockerfileSources, dockerfile_sources


def sources(text: str, **build_args: str) -> DockerfileSources:
    return dockerfile_sources(text.encode(), build_args)


def images(text: str, **build_args: str) -> list[str]:
    """The normalised image of every source; `?<problem>` where it is undetermined."""
    found: list[str] = []
    for source in sources(text, **build_args).images:
        if source.reference is None:
            found.append(f"?{source.problem}")
        else:
            found.append(source.reference.normalized())
    return found


def test_plain_from_with_tag_digest_and_platform() -> None:
    text = """
FROM busybox:1.36
FROM --platform=linux/arm64 127.0.0.1:5000/team/base@sha256:{digest} AS base
from   ghcr.io/acme/app
""".format(digest="a" * 64)
    assert images(text) == [
        "docker.io/library/busybox:1.36",
        "127.0.0.1:5000/team/base@sha256:" + "a" * 64,
        "ghcr.io/acme/app",
    ]
    assert [s.line for s in sources(text).images] == [2, 3, 4]
    assert [s.instruction for s in sources(text).images] == ["FROM"] * 3


def test_scratch_and_earlier_stages_are_not_pulls() -> None:
    text = """
FROM golang:1.22 AS Build
RUN go build
FROM scratch
COPY --from=build /out /app
COPY --from=0 /etc/passwd /etc/passwd
FROM build AS again
"""
    assert images(text) == ["docker.io/library/golang:1.22"]


def test_a_stage_is_known_only_after_it_is_built() -> None:
    # The Engine resolves a stage's own name, and a later stage's, as an image to pull.
    text = """
FROM alpine AS self
COPY --from=self /a /b
COPY --from=later /a /b
FROM alpine AS later
"""
    assert images(text) == [
        "docker.io/library/alpine",
        "docker.io/library/self",
        "docker.io/library/later",
        "docker.io/library/alpine",
    ]


def test_copy_from_an_image_is_a_pull() -> None:
    text = 'FROM scratch\nCOPY --chown=1:1 --from="127.0.0.1:5000/tools:1" /bin/tool /tool\n'
    assert images(text) == ["127.0.0.1:5000/tools:1"]
    assert sources(text).images[0].instruction == "COPY --from"


def test_run_mount_from_an_image_is_a_pull() -> None:
    text = (
        "FROM scratch AS a\nFROM scratch\n"
        "RUN --mount=type=bind,from=evil/cache,target=/c --mount=from=a true\n"
    )
    source = sources(text).images[-1]
    assert source.instruction == "RUN --mount from"
    assert images(text) == ["docker.io/evil/cache"]


def test_global_args_with_defaults_and_build_arg_overrides() -> None:
    text = """
ARG REGISTRY=127.0.0.1:5000
ARG BASE=${REGISTRY}/team/base
ARG TAG=1.0
FROM $BASE:${TAG}
FROM "${REGISTRY}/team/other:${TAG:-x}"
"""
    assert images(text) == ["127.0.0.1:5000/team/base:1.0", "127.0.0.1:5000/team/other:1.0"]
    assert images(text, TAG="2.0") == [
        "127.0.0.1:5000/team/base:2.0",
        "127.0.0.1:5000/team/other:2.0",
    ]
    # A build argument replaces the default as given: it is never expanded itself.
    assert images(text, BASE="ghcr.io/evil/image") == [
        "ghcr.io/evil/image:1.0",
        "127.0.0.1:5000/team/other:1.0",
    ]


def test_build_args_reach_from_only_through_a_global_arg() -> None:
    # Without `ARG BASE` before the first FROM, the Engine ignores build_args BASE here.
    assert images("FROM ${BASE:-busybox}\n", BASE="ghcr.io/evil/x") == ["docker.io/library/busybox"]
    assert images("ARG BASE\nFROM ${BASE:-busybox}\n", BASE="ghcr.io/evil/x") == ["ghcr.io/evil/x"]


def test_args_declared_after_the_first_from_do_not_apply_to_later_froms() -> None:
    text = "FROM scratch\nARG BASE=alpine\nFROM ${BASE:-busybox}\n"
    assert images(text) == ["docker.io/library/busybox"]


def test_substitution_forms() -> None:
    text = "ARG A=alpine\nARG E=\nFROM ${E:-${A}}:${A:+3.19}\nFROM ${E:+x}busybox\n"
    assert images(text) == ["docker.io/library/alpine:3.19", "docker.io/library/busybox"]
    assert images("ARG A=x\nFROM ${A:?unset}\n") == ["docker.io/library/x"]
    # Words are split before they are expanded, as by the Engine.
    assert images("ARG A=x\nFROM ${A:?must be set}\n")[0].startswith("?FROM takes")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("FROM $BASE\n", "$BASE is not set"),
        ("ARG BASE\nFROM ${BASE}\n", "$BASE is not set"),
        ("ARG REG\nFROM ${REG}busybox\n", "$REG is not set"),
        ("ARG A=${MISSING}\nFROM $A\n", "$A is not set"),
        ("FROM ${BASE:?}\n", "$BASE is not set"),
        ("ARG A=x\nFROM ${A%%x}\n", "not supported"),
        ("ARG A=x\nFROM ${A/x/y}\n", "not supported"),
        ("FROM ${}\n", "bad substitution"),
        ("FROM ${A\n", "missing"),
        ("FROM 'busybox\n", "single quote"),
        ('FROM "busybox\n', "double quote"),
        ("FROM\n", "FROM takes an image"),
        ("FROM a b\n", "FROM takes an image"),
        ("FROM a AS\n", "FROM takes an image"),
        ("FROM a LIKE b\n", "FROM takes an image"),
        ("FROM Busybox\n", "invalid image reference"),
        ("FROM scratch\nCOPY --from=$IMG /a /b\n", "variables in --from"),
        ("ARG X=" + "${X:-" * 40 + "\nFROM $X\n", "$X is not set"),
        ("FROM " + "${X:-" * 40 + "a" + "}" * 40 + "\n", "nested too deeply"),
    ],
)
def test_undetermined_images_say_why(text: str, problem: str) -> None:
    source = sources(text).images[-1]
    assert source.reference is None
    assert problem in source.problem


def test_continuations_comments_and_the_escape_directive() -> None:
    text = """# escape=`
# a comment
FROM 127.0.0.1:5000/`
team/`
  # comment inside the instruction

app:1 AS base
RUN echo \\
FROM evil
"""
    # With ` as escape, the backslash does not continue the RUN line: "FROM evil" is an
    # instruction of its own, as for the Engine.
    assert images(text) == ["127.0.0.1:5000/team/app:1", "docker.io/library/evil"]
    assert sources(text).images[0].line == 3


HIDDEN = "FROM 127.0.0.1:5000/ok\nRUN echo {escape}\nFROM evil\n"


@pytest.mark.parametrize(
    ("directives", "hidden_by"),
    [
        # Leading blanks are stripped before directives are looked for (every version).
        (" # escape=`\n", "\\"),
        ("\t# ESCAPE = `\n", "\\"),
        # 20.10 reads the first character after '=' only; later versions the whole value.
        ("# escape=` x\n", "\\"),
        # 20.10 stops at `syntax`; later versions read an escape after it.
        ("# syntax=docker/dockerfile:1\n# escape=`\n", "`"),
        # buildkit 0.14 knows `check`; earlier versions stop there.
        ("# check=skip=all\n# escape=`\n", "`"),
        # An unknown directive ends the directives in every version.
        ("# foo=bar\n# escape=`\n", "`"),
    ],
)
def test_a_from_is_found_however_an_engine_version_reads_the_directives(
    directives: str, hidden_by: str
) -> None:
    """Where Engine versions could read the escape character differently, the Dockerfile
    is read each way: a line the one reading continues (hiding the FROM after it in a
    RUN) is a line of its own for the other."""
    text = directives + HIDDEN.format(escape=hidden_by)
    assert "docker.io/library/evil" in images(text)


def test_agreeing_directives_are_read_once() -> None:
    text = "# syntax=docker/dockerfile:1\nFROM 127.0.0.1:5000/`\nok\n"
    # Every version reads backslash: the backtick continues nothing (one reading only, so
    # one source, and no `127.0.0.1:5000/ok`).
    [source] = sources(text).images
    assert source.reference is None
    assert "'127.0.0.1:5000/`'" in source.problem
    assert images("# escape=`\nFROM 127.0.0.1:5000/`\nok\n") == ["127.0.0.1:5000/ok"]


@pytest.mark.parametrize("line", ["\x1c", " \x1f ", "\x1e# not a comment for the Engine"])
def test_a_line_go_does_not_call_blank_ends_a_continuation(line: str) -> None:
    """Python's str.isspace includes \x1c-\x1f, Go's unicode.IsSpace does not: for the
    Engine such a line is the end of the RUN it continues, and FROM the next instruction."""
    text = f"FROM 127.0.0.1:5000/ok\nRUN echo \\\n{line}\nFROM evil\n"
    assert images(text) == ["127.0.0.1:5000/ok", "docker.io/library/evil"]


def test_blank_and_comment_lines_by_go_spaces_are_skipped() -> None:
    text = (
        "FROM 127.0.0.1:5000/ok\nRUN echo \\\n\u00a0\n\v# comment\n  FROM evil\n\u00a0FROM evil2\n"
    )
    # The blank and comment lines are skipped inside the continuation; "  FROM evil"
    # continues the RUN; a line after unicode blanks is an instruction.
    assert images(text) == ["127.0.0.1:5000/ok", "docker.io/library/evil2"]


def test_onbuild_triggers_name_images_of_the_builds_that_use_this_one() -> None:
    """A trigger runs in a later build FROM this image: its --from is an image there,
    never one of this build's stages, and its remote ADD a download there."""
    text = """FROM 127.0.0.1:5000/ok AS tools
ONBUILD COPY --from=127.0.0.1:5001/evil:1 /x /x
onbuild  copy --from=tools /x /x
ONBUILD COPY --from=0 /x /x
ONBUILD RUN --mount=type=bind,from=evil2 true
ONBUILD COPY --from=$X /x /x
ONBUILD ADD http://example.org/payload /payload
"""
    found = sources(text)
    assert [(s.line, s.instruction) for s in found.images] == [
        (1, "FROM"),
        (2, "ONBUILD COPY --from"),
        (3, "ONBUILD COPY --from"),
        (5, "ONBUILD RUN --mount from"),
        (6, "ONBUILD COPY --from"),
    ]
    assert images(text)[:4] == [
        "127.0.0.1:5000/ok",
        "127.0.0.1:5001/evil:1",
        "docker.io/library/tools",
        "docker.io/library/evil2",
    ]
    assert found.images[4].reference is None
    assert [r.text for r in found.remote] == ["ONBUILD ADD http://example.org/payload"]


def test_the_defaults_of_one_arg_line_see_only_earlier_lines() -> None:
    # The Engine expands a whole ARG line with the arguments known before it.
    assert images("ARG X=127.0.0.1:5000/ok Y=${X:-evil}\nFROM $Y\n") == ["docker.io/library/evil"]
    assert images("ARG X=127.0.0.1:5000/ok\nARG Y=${X:-evil}\nFROM $Y\n") == ["127.0.0.1:5000/ok"]


@pytest.mark.parametrize("name", ["HTTP_PROXY", "https_proxy", "NO_PROXY", "all_proxy"])
def test_proxy_build_arguments_need_no_arg(name: str) -> None:
    """The Engine's built-in proxy arguments reach FROM and ARG defaults undeclared."""
    assert images(f"FROM ${{{name}:-127.0.0.1:5000/ok}}\n", **{name: "evil"}) == [
        "docker.io/library/evil"
    ]
    text = f"ARG B=${{{name}:-127.0.0.1:5000/ok}}\nFROM $B\n"
    assert images(text, **{name: "evil"}) == ["docker.io/library/evil"]
    # Any other build argument needs its ARG.
    assert images("FROM ${OTHER:-127.0.0.1:5000/ok}\n", OTHER="evil") == ["127.0.0.1:5000/ok"]


def test_continuation_lines_are_joined_without_a_space() -> None:
    assert images("FROM 127.0.0.1:5000/te\\\nam/app\n") == ["127.0.0.1:5000/team/app"]


def test_a_directive_after_an_instruction_is_a_comment() -> None:
    text = "FROM scratch\n# escape=`\nRUN a `\nFROM evil\n"
    # ` is not the escape character here, so "RUN a `" does not continue.
    assert images(text) == ["docker.io/library/evil"]


def test_lines_end_at_newlines_only() -> None:
    # The Engine's scanner splits lines on "\n" only; U+2028 separates words.
    assert images("FROM alpine\u2028AS x\nFROM x\n") == ["docker.io/library/alpine"]
    # \x1c is neither a line end nor a word separator for the Engine.
    assert images("FROM alpine\x1cAS x\n")[0].startswith("?FROM takes")
    assert images("FROM alpine\r\nFROM busybox\r\n") == [
        "docker.io/library/alpine",
        "docker.io/library/busybox",
    ]


def test_flags_with_quoted_spaces_do_not_hide_the_image() -> None:
    assert images('FROM --platform="linux/amd64 x" ghcr.io/acme/app\n') == ["ghcr.io/acme/app"]


def test_byte_order_mark_and_invalid_utf8() -> None:
    assert images("\ufeffFROM alpine\n") == ["docker.io/library/alpine"]
    [source] = dockerfile_sources(b"FROM alp\xffine\n", {}).images
    assert source.reference is None


@pytest.mark.parametrize(
    "line",
    [
        "ADD http://169.254.169.254/latest/meta-data/ /x",
        "ADD https://example.com/a.tgz /x",
        "ADD --chown=1:1 HTTP://example.com/a /x",
        'ADD ["https://example.com/a", "/x"]',
        "ADD git@github.com:acme/repo.git /src",
        "ADD ${URL} /x",
        "ADD ht${REST} /x",
        "ADD ${U:-http://x/y} /x",
        "ADD local.txt https://a/b /x",
        'ADD "http://example.com/a" /x',
    ],
)
def test_remote_add_sources_are_found(line: str) -> None:
    found = sources(f"FROM scratch\n{line}\n").remote
    assert [r.line for r in found] == [2]
    assert found[0].text.startswith("ADD ")


@pytest.mark.parametrize(
    "line",
    [
        "ADD app.tar.gz /app",
        "ADD src/${NAME}.txt /x",
        'ADD ["a b", "/x"]',
        "ADD http /x",
        "COPY https://example.com/a /x",
    ],
)
def test_local_add_sources_are_not_remote(line: str) -> None:
    assert sources(f"FROM scratch\n{line}\n").remote == ()


def test_instructions_are_case_insensitive() -> None:
    text = "from scratch as a\nCopy --FROM=ghcr.io/x/y /a /b\nfrom a\n"
    assert images(text) == ["ghcr.io/x/y"]


def test_quoted_instructions_keep_no_password() -> None:
    found = sources("FROM ci:hunter2@127.0.0.1:5000/app\nADD https://ci:hunter2@example.org/x /x\n")
    texts = [s.text + s.problem for s in found.images] + [r.text for r in found.remote]
    assert texts
    assert not [t for t in texts if "hunter2" in t]
