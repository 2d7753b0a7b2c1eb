"""Secrets in source URLs: literal passwords moved to the environment, masked for printing,
``${VAR}`` expanded at the moment of use.
"""

from __future__ import annotations

import re

from autokfp.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


SQL_PASSWORD_ENV_PREFIX = "AUTOKFP_SQL_PASSWORD_"


# user:password@ as SQLAlchemy parses it (a username has no ':' or '/', a password no '@')
_URL_PASSWORD = re.compile(r"^(?P<head>[\w+.-]+://[^:/@]*:)(?P<password>[^@]*)(?P<tail>@.*)$",
                           re.S)


_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<password>[^&]*)", re.I)


def password_env_name(source_name: str) -> str:
    """The environment variable a SQL source's literal password is moved to."""
    return SQL_PASSWORD_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", source_name).upper()


def _literal(password: str) -> bool:
    # a password written as (or with) ${VAR} already comes from the environment
    return bool(password) and not _ENV_REF.search(password)


def has_literal_password(url: str) -> bool:
    """Whether ``url`` holds a literal ``user:PASSWORD@`` (one written as ``${VAR}`` is not)."""
    match = _URL_PASSWORD.match(url)
    return bool(match and _literal(match["password"]))


def move_literal_passwords(url: str, env_name: str) -> tuple[str, list[str]]:
    """``url`` with each literal password (``user:PASSWORD@`` or ``?password=``) replaced by
    a ``${VAR}`` reference, its value put into ``os.environ``; returns the variables set.

    The value is kept as written (still URL-encoded), which is what ``expand_env`` puts back.
    """
    import os

    moved: list[str] = []
    match = _URL_PASSWORD.match(url)
    if match and _literal(match["password"]):
        os.environ[env_name] = match["password"]
        url = f"{match['head']}${{{env_name}}}{match['tail']}"
        moved.append(env_name)
    query_env = env_name + "_QUERY"

    def _query(found: re.Match[str]) -> str:
        if not _literal(found["password"]):
            return found[0]
        os.environ[query_env] = found["password"]
        moved.append(query_env)
        return f"{found['head']}${{{query_env}}}"

    if "?" in url:
        base, _, query = url.partition("?")
        url = base + _QUERY_PASSWORD.sub(_query, "?" + query)
    return url, moved


def mask_url_password(url: str) -> str:
    """``url`` safe to print: a literal password (``user:PASSWORD@``, ``?password=``) shows as
    ``***``; ``${VAR}`` references are kept (they name, not hold, the secret)."""
    match = _URL_PASSWORD.match(url)
    if match and _literal(match["password"]):
        url = f"{match['head']}***{match['tail']}"
    if "?" in url:
        base, _, query = url.partition("?")
        url = base + _QUERY_PASSWORD.sub(
            lambda m: m["head"] + ("***" if _literal(m["password"]) else m["password"]),
            "?" + query)
    return url


def whole_env_ref(url: str) -> str | None:
    """The variable a URL written wholly as ``${VAR}`` names (the whole database URL kept
    in the environment, password and all), else None."""
    found = _ENV_REF.fullmatch(url.strip())
    return found[1] if found else None


def expand_env(url: str) -> str:
    """Expand ``${VAR}`` references (for secrets) at the moment of use, never earlier."""

    def _sub(match: re.Match[str]) -> str:
        import os

        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"environment variable {name} (referenced in a source URL) is not "
                              "set; set it where the step runs (in a cluster, from a Kubernetes "
                              "Secret)")
        return os.environ[name]

    return _ENV_REF.sub(_sub, url)
