"""Registry policy: which repositories images may be pulled from, and which names images
may be given (tag targets, build tags, push references).

Patterns are matched against the *normalised repository* of a reference, never against
the text as written: `busybox`, `library/busybox` and `index.docker.io/busybox` are all
`docker.io/library/busybox`. Tags and digests are not part of the match.

Pattern syntax (case-insensitive):
    <registry>/<path>   e.g. `127.0.0.1:5000/team/app`, `ghcr.io/acme/*`
    `*`                 any run of characters within one path component (or the
                        registry host[:port]): `127.0.0.1:*/**` is any port on 127.0.0.1
    `**`                any run of characters including `/`: `docker.io/library/**`
    a name without a registry is a Docker Hub one, as in `docker pull`:
                        `alpine` is `docker.io/library/alpine`, `acme/*` is `docker.io/acme/*`
A pattern that is only a registry (`127.0.0.1:5000`) or names a tag (`alpine:3`) is
rejected when the server starts, with the pattern to write instead.

An absent allowlist (no patterns) allows everything; the server says so loudly at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from imagesvc.core.errors import InvalidArgumentError, PermissionDeniedError, Reason
from imagesvc.core.references import DEFAULT_DOMAIN, Reference, is_registry_domain

# Docker's own alias for Docker Hub (distribution/reference: legacyDefaultDomain).
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_PATTERN_TEXT = re.compile(r"[a-z0-9._\-:/*\[\]]+")


def canonical_repository(reference: Reference) -> str:
    """The repository as the Engine resolves it, for matching: registry lower-cased, Docker
    Hub made explicit (`docker.io/library/busybox`), `index.docker.io` folded into it."""
    # Docker Hub's rules apply to these exact spellings only, as in the Engine's
    # distribution/reference: `Docker.io/busybox` is the repository `busybox` of a host
    # that happens to be spelled like Docker Hub, not `docker.io/library/busybox`.
    path = reference.path
    if reference.domain in ("", DEFAULT_DOMAIN, _LEGACY_DEFAULT_DOMAIN):
        return f"{DEFAULT_DOMAIN}/{path if '/' in path else f'library/{path}'}"
    return f"{reference.domain.lower()}/{path}"


@dataclass(frozen=True, slots=True)
class RepositoryPattern:
    text: str
    regex: re.Pattern[str]
    # The registry part alone, for CheckRegistryAuth, which names a registry only.
    registry: re.Pattern[str]

    def matches(self, repository: str) -> bool:
        return self.regex.fullmatch(repository) is not None

    def names_registry(self, registry: str) -> bool:
        return self.registry.fullmatch(registry) is not None


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts))


def parse_pattern(text: str) -> RepositoryPattern:
    """One allowlist pattern; ValueError with what to write instead when it is malformed."""
    pattern = text.strip().lower()
    if "@" in pattern:
        raise ValueError(f"registry pattern {text!r}: patterns match repositories, not digests")
    if not pattern or not _PATTERN_TEXT.fullmatch(pattern):
        raise ValueError(
            f"registry pattern {text!r}: use lower-case registry/repository names with"
            " '*' (one component) and '**' (any depth), e.g. 127.0.0.1:5000/team/*"
        )
    if pattern == "**":
        return RepositoryPattern(text.strip(), _glob_regex(pattern), _glob_regex(pattern))
    first, slash, rest = pattern.partition("/")
    names_registry = "." in first or ":" in first or first == "localhost" or "*" in first
    if not slash and names_registry:
        raise ValueError(
            f"registry pattern {text!r} names no repository: patterns match repositories"
            f" (not tags); for a whole registry write {first}/**"
        )
    domain, path = (first, rest) if names_registry else (DEFAULT_DOMAIN, pattern)
    if domain == _LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    # As in `docker pull alpine`: a one-component Docker Hub name is an official image.
    if domain == DEFAULT_DOMAIN and "/" not in path and "**" not in path:
        path = f"library/{path}"
    if ":" in path:
        raise ValueError(
            f"registry pattern {text!r}: patterns match repositories, not tags;"
            " drop the ':tag' part"
        )
    if not path or "" in path.split("/"):
        raise ValueError(f"registry pattern {text!r} has an empty path component")
    pattern = f"{domain}/{path}"
    return RepositoryPattern(text.strip(), _glob_regex(pattern), _glob_regex(domain))


def parse_patterns(text: str) -> tuple[RepositoryPattern, ...]:
    """Patterns separated by commas and/or white space (the form of a flag or variable)."""
    return tuple(parse_pattern(item) for item in re.split(r"[\s,]+", text) if item)


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Repository patterns; `None` patterns means no allowlist (everything allowed)."""

    patterns: tuple[RepositoryPattern, ...] | None = None

    @classmethod
    def from_text(cls, text: str) -> Allowlist:
        patterns = parse_patterns(text)
        return cls(patterns or None)

    @property
    def allows_everything(self) -> bool:
        return self.patterns is None

    def allows(self, reference: Reference) -> bool:
        if self.patterns is None:
            return True
        repository = canonical_repository(reference)
        return any(pattern.matches(repository) for pattern in self.patterns)

    def names_registry(self, registry: str) -> bool:
        """Whether some repository of `registry` (a canonical host[:port]) is allowed."""
        if self.patterns is None:
            return True
        return any(pattern.names_registry(registry) for pattern in self.patterns)

    def describe(self) -> str:
        if self.patterns is None:
            return "any"
        return ", ".join(pattern.text for pattern in self.patterns)


@dataclass(frozen=True, slots=True)
class RegistryPolicy:
    """`pull`: where images may come from (PullImage, a build's base images).
    `push`: which names images may get (TagImage targets, build tags, PushImage)."""

    pull: Allowlist = field(default_factory=Allowlist)
    push: Allowlist = field(default_factory=Allowlist)

    @classmethod
    def from_text(cls, pull: str, push: str) -> RegistryPolicy:
        return cls(Allowlist.from_text(pull), Allowlist.from_text(push))

    def check_pull(self, reference: Reference, *, what: str = "pulling") -> None:
        """PERMISSION_DENIED (REGISTRY_NOT_ALLOWED) unless the pull allowlist admits it.

        `what` says what needed the image, e.g. "the base image on line 3 of Dockerfile".
        """
        if not self.pull.allows(reference):
            raise _not_allowed(reference, what, "pull", "--pull-allowlist")

    def check_target(self, reference: Reference, *, what: str) -> None:
        """PERMISSION_DENIED (REGISTRY_NOT_ALLOWED) unless the tag/push allowlist admits it."""
        if not self.push.allows(reference):
            raise _not_allowed(reference, what, "push", "--push-allowlist")

    def check_registry(self, registry: str) -> None:
        """PERMISSION_DENIED (REGISTRY_NOT_ALLOWED) unless an allowlist names some
        repository of `registry` (from `registry_of_server_address`): the credentials
        of a registry nothing may be pulled from or pushed to need no checking, and the
        check makes the daemon connect to it."""
        if not (self.pull.names_registry(registry) or self.push.names_registry(registry)):
            raise PermissionDeniedError(
                f"checking credentials for {registry}: no repository of that registry is"
                " allowed by this service's registry policy (the pull and push allowlists);"
                " ask the operator to add a pattern for it to --pull-allowlist or"
                " --push-allowlist",
                reason=Reason.REGISTRY_NOT_ALLOWED,
                metadata={"registry": registry[:256], "allowlist": "pull, push"},
            )


# What CheckRegistryAuth's server_address may hold besides host[:port] and a path: the
# Engine reads it as a URL, which would take the host after an '@' or before a '?'/'#'.
_NOT_IN_SERVER_ADDRESS = re.compile(r"[@?#%\\\s]")


def registry_of_server_address(text: str) -> str:
    """The registry (canonical host[:port]) the Engine's POST /auth contacts for
    `server_address`: Docker Hub when empty; else the host of `[http[s]://]host[/path]`,
    as the daemon reads it (it prepends https:// and takes the URL's host). Anything the
    daemon could read as another host is INVALID_ARGUMENT."""
    if not text:
        return DEFAULT_DOMAIN
    rest = text
    for scheme in ("https://", "http://"):
        if rest.startswith(scheme):
            rest = rest[len(scheme) :]
            break
    host = rest.split("/", 1)[0]
    if _NOT_IN_SERVER_ADDRESS.search(text) or not is_registry_domain(host):
        # Not quoted: text with an '@' may hold a user name and password.
        raise InvalidArgumentError(
            "auth.server_address must be a registry's host[:port], optionally with http://"
            " or https:// and a path, e.g. registry.example.org:5000 (no user information,"
            " query or fragment)",
            reason=Reason.INVALID_ARGUMENT,
            metadata={"field": "server_address"},
        )
    registry = host.lower()
    return DEFAULT_DOMAIN if registry == _LEGACY_DEFAULT_DOMAIN else registry


def _not_allowed(reference: Reference, what: str, kind: str, flag: str) -> PermissionDeniedError:
    repository = canonical_repository(reference)
    return PermissionDeniedError(
        f"{what}: {repository} is not allowed by this service's registry policy"
        f" (the {kind} allowlist); use an allowed repository or ask the operator to add a"
        f" matching pattern to {flag}",
        reason=Reason.REGISTRY_NOT_ALLOWED,
        metadata={"repository": repository[:256], "allowlist": kind},
    )
