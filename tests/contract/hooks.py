"""Schemathesis hooks for the Switchyard API contract run.

Loaded by schemathesis 4.x through the SCHEMATHESIS_HOOKS environment variable (a file
path or an importable module name); `schemathesis run` has no --hooks option in 4.x.
Registering with @schemathesis.check adds the check to the registry; it runs by default
(it is "enabled" unless excluded) and is also selectable by name with
`--checks problem_json_errors` / `--exclude-checks problem_json_errors`.
"""

from __future__ import annotations

import json
import os

import requests
import schemathesis

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:switchyard:problem:"


def _media_type(response) -> str | None:
    # Response.headers: lowercase keys, list values.
    values = response.headers.get("content-type") or []
    if not values:
        return None
    return values[0].split(";", 1)[0].strip().lower()


@schemathesis.check
def problem_json_errors(ctx, response, case):
    """Every 4xx/5xx is RFC 9457 application/problem+json with a urn:switchyard:problem: type."""
    status = response.status_code
    if status < 400:
        return None
    # HEAD responses carry no body by definition.
    if (response.request.method or "").upper() == "HEAD":
        return None
    # No URL in the message: schemathesis groups failures by message, and its report already
    # shows a curl line reproducing the request.
    where = f"{response.request.method} -> {status}"
    media_type = _media_type(response)
    if media_type != PROBLEM_MEDIA_TYPE:
        raise AssertionError(
            f"error response is not {PROBLEM_MEDIA_TYPE} (content-type: {media_type!r}); {where}"
        )
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AssertionError(f"problem body is not JSON ({exc}); {where}") from None
    if not isinstance(body, dict):
        raise AssertionError(f"problem body is not a JSON object: {type(body).__name__}; {where}")
    problems = []
    kind = body.get("type")
    if not isinstance(kind, str) or not kind.startswith(TYPE_PREFIX):
        problems.append(f"`type` must be a string starting with {TYPE_PREFIX!r}, got {kind!r}")
    if not isinstance(body.get("title"), str):
        problems.append(f"`title` must be a string, got {body.get('title')!r}")
    body_status = body.get("status")
    if isinstance(body_status, bool) or not isinstance(body_status, int):
        problems.append(f"`status` must be an integer, got {body_status!r}")
    elif body_status != status:
        problems.append(f"`status` is {body_status} but the response status is {status}")
    if "detail" in body and not isinstance(body["detail"], str):
        problems.append(f"`detail` must be a string when present, got {body['detail']!r}")
    if problems:
        raise AssertionError("; ".join(problems) + f"; {where}")
    return None


if os.environ.get("CONTRACT_EMAIL"):

    @schemathesis.auth()
    class SessionAuth:
        """Every request acts as the administrator run.sh opened. A 401 (after a fuzzed
        logout or `DELETE /api/sessions`) makes schemathesis log in again and send the
        request once more (`retry_on`, 401 by default), so the rest of the run is not
        left unauthenticated."""

        def get(self, case, ctx):
            response = requests.post(
                f"{os.environ['CONTRACT_BASE_URL']}/api/sessions",
                json={
                    "email": os.environ["CONTRACT_EMAIL"],
                    "password": os.environ["CONTRACT_PASSWORD"],
                },
                timeout=10,
            )
            response.raise_for_status()
            return response.json()["token"]

        def set(self, case, data, ctx):
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {data}"
