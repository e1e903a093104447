"""The client's .dockerignore matcher against the semantics of the docker CLI
(moby/patternmatcher and the examples of Docker's documentation)."""

from __future__ import annotations

import pytest

from imagesvc_client.dockerignore import IgnoreRules, InvalidPattern, read_patterns


def _excluded(ignore_file: str, path: str) -> bool:
    return IgnoreRules(read_patterns(ignore_file)).excludes(path)


@pytest.mark.parametrize(
    ("ignore_file", "path", "excluded"),
    [
        # Docker's documentation examples.
        ("*/temp*", "somedir/temporary.txt", True),
        ("*/temp*", "somedir/temp", True),
        ("*/temp*", "temp.txt", False),
        ("*/temp*", "a/b/temp.txt", False),
        ("*/*/temp*", "somedir/subdir/temporary.txt", True),
        ("*/*/temp*", "somedir/temporary.txt", False),
        ("temp?", "tempa", True),
        ("temp?", "tempab", False),
        ("temp?", "temp", False),
        ("temp?", "temp/", False),
        # ** spans any number of directories, also none.
        ("**/*.go", "main.go", True),
        ("**/*.go", "a/b/c/main.go", True),
        ("**/*.go", "a/b/c/main.goo", False),
        ("a/**/z", "a/z", True),
        ("a/**/z", "a/b/c/z", True),
        ("a/**/z", "b/a/z", False),
        ("**/foo", "foo", True),
        ("**/foo", "x/y/foo", True),
        ("**/foo", "x/yfoo", False),
        ("**", "anything/at/all", True),
        ("build/**", "build/x", True),
        ("build**", "builder", True),
        # A pattern matching a directory excludes everything below it.
        ("build", "build/out/app.bin", True),
        ("build", "buildx/app", False),
        ("*.log", "logs/app.log", False),
        ("logs/*.log", "logs/app.log", True),
        # Cleaning: leading slash, "..", "./", surrounding spaces, comments, CRLF.
        ("/secret.txt", "secret.txt", True),
        ("./a/../secret.txt", "secret.txt", True),
        ("   secret.txt   ", "secret.txt", True),
        ("# secret.txt", "secret.txt", False),
        ("secret.txt\r\n", "secret.txt", True),
        ("\ufeffsecret.txt", "secret.txt", True),
        # Character classes and escapes.
        ("[a-c].txt", "b.txt", True),
        ("[a-c].txt", "d.txt", False),
        ("[^a-c].txt", "d.txt", True),
        ("[^a-c].txt", "a.txt", False),
        # Go's regexp (as filepath.Match) has no "[!...]": "!" is a member of the class.
        ("[!a-c].txt", "d.txt", False),
        ("[!a-c].txt", "a.txt", True),
        ("[!a-c].txt", "!.txt", True),
        ("\\*.txt", "*.txt", True),
        ("\\*.txt", "a.txt", False),
        # Regular-expression characters mean themselves.
        ("a.b", "axb", False),
        ("a+b(1)", "a+b(1)", True),
        ("v$1", "v$1", True),
        # Exceptions: the last matching pattern wins.
        ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
        ("*.md\n!README*.md\nREADME-secret.md", "README.md", False),
        ("*.md\n!README*.md\nREADME-secret.md", "CHANGES.md", True),
        ("*.md\nREADME-secret.md\n!README*.md", "README-secret.md", False),
        ("docs\n!docs/keep.md", "docs/keep.md", False),
        ("docs\n!docs/keep.md", "docs/drop.md", True),
        ("!keep\n*", "keep", True),
        ("", "anything", False),
    ],
)
def test_matches_like_the_docker_cli(ignore_file: str, path: str, excluded: bool) -> None:
    assert _excluded(ignore_file, path) is excluded


def test_the_context_root_is_never_excluded() -> None:
    assert not IgnoreRules(["**", "*"]).excludes(".")


def test_descends_into_an_excluded_directory_only_for_an_exception_below_it() -> None:
    rules = IgnoreRules(["docs", "!docs/keep.md", "vendor"])
    assert rules.may_include_below("docs")
    assert not rules.may_include_below("vendor")
    assert not rules.may_include_below("doc")


@pytest.mark.parametrize("bad", ["!", "[a-"])
def test_invalid_patterns_are_refused(bad: str) -> None:
    with pytest.raises(InvalidPattern):
        IgnoreRules([bad])


def test_read_patterns_keeps_order_and_exceptions() -> None:
    text = "# comment\n\n  *.tmp \n! important.tmp\n/abs/path/\n"
    assert read_patterns(text) == ["*.tmp", "!important.tmp", "abs/path"]
