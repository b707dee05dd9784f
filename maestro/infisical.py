"""A small client of Infisical's HTTP API: a machine identity's Universal Auth login and
reading secrets by name. No SDK: two documented endpoints are all the maestro needs.

- ``POST /api/v1/auth/universal-auth/login`` ``{"clientId", "clientSecret"}`` ->
  ``{"accessToken", "expiresIn", "tokenType": "Bearer"}``
- ``GET /api/v3/secrets/raw/{name}?workspaceId=&environment=&secretPath=`` with
  ``Authorization: Bearer <accessToken>`` -> ``{"secret": {"secretKey", "secretValue"}}``

An expired or revoked access token (401) is renewed by one new login; 429 is waited out
as its ``Retry-After`` says (a few times, bounded); 404 names the missing secret. No
error message carries a secret, the client secret or an access token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import httpx

from maestro.errors import ConfigError

LOGIN_PATH: Final = "/api/v1/auth/universal-auth/login"
SECRET_PATH: Final = "/api/v3/secrets/raw/{name}"  # noqa: S105 - a URL path
MAX_RATE_LIMITED: Final = 5  # 429 answers waited out for one request before giving up
MAX_RETRY_AFTER_S: Final = 60.0
RENEW_BEFORE_S: Final = 30.0  # log in again this long before the access token expires


class InfisicalError(ConfigError):
    """Infisical could not be reached, refused the identity, or lacks a secret."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Where to log in and which secrets to read (``[secrets]`` of the settings)."""

    site_url: str
    client_id: str
    client_secret: str
    project_id: str
    environment: str
    path: str = "/"

    def __repr__(self) -> str:  # never the client secret
        return f"Identity(site_url={self.site_url!r}, project_id={self.project_id!r})"


class InfisicalClient:
    """Reads secrets for one machine identity; thread-safe enough for one caller."""

    def __init__(
        self,
        identity: Identity,
        *,
        timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.identity = identity
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=identity.site_url.rstrip("/"), timeout=timeout_s, transport=transport
        )
        self._token: str | None = None
        self._expires_at = 0.0
        self.logins = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InfisicalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- API ------------------------------------------------------------------------------
    def login(self) -> None:
        """Exchange the client id and secret for an access token."""
        body = {"clientId": self.identity.client_id, "clientSecret": self.identity.client_secret}
        response = self._request("POST", LOGIN_PATH, json=body)
        if response.status_code in {400, 401, 403, 404}:
            raise InfisicalError(
                f"Infisical at {self.identity.site_url} refused the machine identity's "
                f"client id and secret (HTTP {response.status_code}); check "
                "secrets.client_id_file and secrets.client_secret_file"
            )
        data = self._json(response, "login")
        token = data.get("accessToken")
        if not isinstance(token, str) or not token:
            raise InfisicalError(
                f"Infisical's login answer at {self.identity.site_url} has no token"
            )
        expires_in = data.get("expiresIn")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        self._token = token
        self._expires_at = self._clock() + max(1.0, lifetime - RENEW_BEFORE_S)
        self.logins += 1

    def secret(self, name: str) -> str:
        """The value of secret ``name`` in the identity's project, environment and path."""
        if self._token is None or self._clock() >= self._expires_at:
            self.login()
        ident = self.identity
        path = SECRET_PATH.format(name=quote(name, safe=""))
        params = {
            "workspaceId": ident.project_id,
            "environment": ident.environment,
            "secretPath": ident.path,
        }
        response = self._request("GET", path, params=params, auth=True)
        if response.status_code == 401:  # the access token expired or was revoked
            self.login()
            response = self._request("GET", path, params=params, auth=True)
        where = f"project {ident.project_id}, environment {ident.environment}, path {ident.path}"
        if response.status_code == 404:
            raise InfisicalError(f"Infisical has no secret {name!r} ({where})")
        if response.status_code in {401, 403}:
            raise InfisicalError(
                f"Infisical refused to give secret {name!r} to the machine identity "
                f"(HTTP {response.status_code}; {where}): grant it read access"
            )
        secret = self._json(response, f"secret {name!r}").get("secret")
        value = secret.get("secretValue") if isinstance(secret, dict) else None
        if not isinstance(value, str):
            raise InfisicalError(f"Infisical's answer for secret {name!r} holds no value")
        return value

    # -- transport ------------------------------------------------------------------------
    def _request(
        self, method: str, path: str, *, auth: bool = False, **kwargs: Any
    ) -> httpx.Response:
        for _ in range(MAX_RATE_LIMITED + 1):
            headers = {"Authorization": f"Bearer {self._token}"} if auth else {}
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise InfisicalError(
                    f"cannot reach Infisical at {self.identity.site_url}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            if response.status_code != 429:
                if response.status_code >= 500:
                    raise InfisicalError(
                        f"Infisical at {self.identity.site_url} failed (HTTP "
                        f"{response.status_code}); try again later"
                    )
                return response
            self._sleep(_retry_after(response))
        raise InfisicalError(
            f"Infisical at {self.identity.site_url} kept answering 429 (rate limited) "
            f"{MAX_RATE_LIMITED + 1} times; read fewer secrets or less often (refresh_s)"
        )

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise InfisicalError(
                f"Infisical answered HTTP {response.status_code} for the {what} request"
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise InfisicalError(f"Infisical's answer to the {what} request is not a JSON object")
        return data


def _retry_after(response: httpx.Response) -> float:
    raw = response.headers.get("Retry-After", "")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
