"""Check every answer before anything is rendered; refuse bad ones with one line per field.

The answers arrive as JSON inside a raw string literal: Jinja's `tojson` escapes quotes, so no
answer can end the literal or run as code here; it is only ever data.
"""

import json
import keyword
import re
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

# Package names that would shadow a dependency or the tests package when imported.
RESERVED_PACKAGES = frozenset(
    {
        "aiohttp",
        "anyio",
        "fastapi",
        "httpx",
        "httpx2",
        "pydantic",
        "starlette",
        "tests",
        "uvicorn",
    }
)
CHOICES = {
    "response_mode": {"both", "stream", "buffered"},
    "python_version": {"3.13", "3.12", "3.11"},
    "httpx_package": {"httpx2", "httpx"},
    "http_transport": {"aiohttp", "native"},
}
# Yes-or-no questions: cookiecutter turns "yes", "no", "true", "false" and the like into booleans.
FLAGS = ("metrics", "tracing")
_SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_PACKAGE = re.compile(r"[a-z_][a-z0-9_]*")
_EMAIL = re.compile(r"[^@\s\"'<>\\]+@[^@\s\"'<>\\]+\.[^@\s\"'<>\\]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(value: str) -> str | None:
    if '"' in value or "\\" in value or len(value) > 80:
        return 'must be at most 80 characters, without " or \\'
    return check_text(value)


def check_text(value: str) -> str | None:
    if not value.strip():
        return "must not be empty"
    if _CONTROL.search(value):
        return "must be one line of text without control characters"
    if len(value) > 200:
        return "must be at most 200 characters"
    return None


def check_slug(value: str) -> str | None:
    if len(value) <= 64 and _SLUG.fullmatch(value):
        return None
    return "use lowercase letters, digits and single hyphens, starting with a letter (e.g. upstream-relay)"


def check_package(value: str) -> str | None:
    if not _PACKAGE.fullmatch(value) or len(value) > 64:
        return (
            "use lowercase letters, digits and underscores, not starting with a digit (e.g. upstream_relay)"
        )
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        return "is a Python keyword; pick another name"
    if value in RESERVED_PACKAGES:
        return "would shadow a package the service imports; pick another name"
    return None


def check_email(value: str) -> str | None:
    return None if _EMAIL.fullmatch(value) else "use an address like you@example.com"


def check_url(value: str) -> str | None:
    accepted = "use an absolute http:// or https:// URL with a host, e.g. https://api.example.com/v1"
    if re.search(r"[\s\"'\\<>{}|^`]", value):
        return f"must not hold spaces, quotes or backslashes; {accepted}"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError:
        return f"is not a valid URL; {accepted}"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return accepted
    if parts.username is not None or parts.password is not None:
        return f"must not hold user info (put credentials in headers, not the URL); {accepted}"
    if parts.query or parts.fragment or "?" in value or "#" in value:
        return f"must not hold a query or fragment; {accepted}"
    return None


def choice_check(field: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        allowed = sorted(CHOICES[field])
        return None if value in allowed else f"choose one of {', '.join(allowed)}"

    return check


CHECKS: dict[str, Callable[[str], str | None]] = {
    "project_name": check_name,
    "project_slug": check_slug,
    "package_name": check_package,
    "description": check_text,
    "author_name": check_text,
    "author_email": check_email,
    "upstream_base_url": check_url,
    **{field: choice_check(field) for field in CHOICES},
}


def problems(answers: dict[str, object]) -> list[str]:
    """One message per bad answer, naming the field, the value and what is accepted."""
    found = []
    for field, check in CHECKS.items():
        value = answers.get(field)
        reason = check(value) if isinstance(value, str) else "must be text"
        if reason:
            found.append(f"{field}={value!r}: {reason}")
    for field in FLAGS:
        if not isinstance(answers.get(field), bool):
            found.append(f"{field}={answers.get(field)!r}: answer yes or no")
    return found


def main() -> int:
    found = problems(json.loads(ANSWERS_JSON))
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
