"""The rooms API's review findings, over HTTP (the identity app of conftest.py: real routes,
real store): times validated in full before anything is stored, a list that survives a bad
stored row, participants that must be existing identities (and leave rooms when deleted), and
oversized numbers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from switchboard.signalling.identity.hmac_auth import sign_request
from switchboard.signalling.identity.routes import new_identity_id
from switchboard.signalling.keys import STORE
from switchboard.signalling.store.models import Room

IDENTITY_API = "?api-version=2023-10-01"
ROOMS_API = "?api-version=2025-03-13"


@pytest.fixture
def signed(identity_client: TestClient, access_key_b64: str) -> Any:
    """``await signed(method, path, body=b"")``: a signed request; ``body`` a dict or bytes."""

    async def request(method: str, path: str, body: dict[str, Any] | bytes = b"") -> ClientResponse:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        headers = sign_request(method, str(identity_client.make_url(path)), raw, access_key_b64)
        headers["Content-Type"] = "application/json"
        return await identity_client.request(method, path, data=raw, headers=headers)

    return request


async def _error(response: ClientResponse) -> str:
    assert response.status == 400, await response.text()
    body = await response.json()
    assert body["error"]["code"] == "BadRequest"
    return str(body["error"]["message"])


async def _rooms(signed: Any) -> list[dict[str, Any]]:
    response = await signed("GET", "/rooms" + ROOMS_API)
    assert response.status == 200, await response.text()
    return list((await response.json())["value"])


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"validFrom": "9999-12-31T23:59:59Z"},
            "the default validUntil (validFrom + 180 days) must be within",
            id="default validUntil past year 9999",
        ),
        pytest.param(
            {"validFrom": "9999-12-31T00:00:00Z", "validUntil": "9999-12-31T23:59:59Z"},
            None,
            id="the last day is fine",
        ),
        pytest.param(
            {"validUntil": "9999-12-31T23:59:59Z"},
            "validUntil 9999-12-31T23:59:59Z must be at most 180 days after the default "
            "validFrom (now)",
            id="validUntil alone, too far",
        ),
        pytest.param(
            {"validUntil": "2020-01-01T00:00:00Z"},
            "validUntil 2020-01-01T00:00:00Z must be after the default validFrom (now)",
            id="validUntil alone, in the past",
        ),
        pytest.param(
            {"validFrom": "9999-12-31T23:00:00-05:00"}, "outside years 1..9999", id="past 9999 UTC"
        ),
        pytest.param(
            {"validFrom": "0001-01-01T00:30:00+01:00"}, "outside years 1..9999", id="before year 1"
        ),
        pytest.param({"validFrom": "2026-12-01T00:00:00"}, "time zone", id="naive"),
        pytest.param({"validFrom": "2026-12-01"}, "time zone", id="a date"),
    ],
)
async def test_create_checks_times_before_storing(
    signed: Any, body: dict[str, Any], message: str | None
) -> None:
    response = await signed("POST", "/rooms" + ROOMS_API, body)
    if message is None:
        assert response.status == 201, await response.text()
        room = await response.json()
        assert (room["validFrom"], room["validUntil"]) == (body["validFrom"], body["validUntil"])
        assert await _rooms(signed) == [room]
        return
    assert message in await _error(response)
    assert await _rooms(signed) == []  # nothing stored, and the list still works


async def test_patch_checks_times_against_the_stored_ones(signed: Any) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    body = {"validFrom": _iso(start), "validUntil": _iso(start + timedelta(days=1))}
    room = await (await signed("POST", "/rooms" + ROOMS_API, body)).json()
    path = f"/rooms/{room['id']}{ROOMS_API}"
    cases = [
        (
            {"validUntil": "9999-12-31T23:59:59Z"},
            f"validUntil 9999-12-31T23:59:59Z must be at most 180 days after the room's "
            f"validFrom {_iso(start)}",
        ),
        (
            {"validUntil": _iso(start - timedelta(hours=1))},
            f"must be after the room's validFrom {_iso(start)}",
        ),
        (
            {"validFrom": "9999-12-31T23:59:59Z"},
            f"the room's validUntil {body['validUntil']} must be after validFrom "
            "9999-12-31T23:59:59Z",
        ),
        ({"validFrom": "9999-12-31T23:59:59+00:00", "validUntil": "+10000-01-01"}, "ISO 8601"),
        ({"validUntil": "2026-12-31T00:00:00"}, "time zone"),
    ]
    for patch, message in cases:
        assert message in await _error(await signed("PATCH", path, patch)), patch
    assert await _rooms(signed) == [room]  # unchanged, and listed


async def test_a_bad_stored_row_does_not_break_the_list(
    signed: Any, identity_app: web.Application
) -> None:
    """A row an older version stored (validUntil in year 10000, or not a number) is listed
    clamped instead of failing every GET /rooms; it can still be read and deleted."""
    good = await (await signed("POST", "/rooms" + ROOMS_API, {})).json()
    async with identity_app[STORE].session.begin() as session:
        session.add(
            Room(
                id="1",
                created_at=0.0,
                valid_from=253402300799.0,
                valid_until=253402300799.0 + 180 * 86400,
                pstn_dial_out_enabled=False,
            )
        )
        session.add(
            Room(
                id="2",
                created_at=-1e300,
                valid_from=-1e20,
                valid_until=float("inf"),
                pstn_dial_out_enabled=False,
            )
        )
    rooms = {room["id"]: room for room in await _rooms(signed)}
    assert rooms[good["id"]] == good
    assert rooms["1"]["validUntil"] == "9999-12-31T23:59:59Z"
    assert rooms["2"]["validFrom"] == "0001-01-01T00:00:00Z"
    response = await signed("GET", f"/rooms/1{ROOMS_API}")
    assert response.status == 200
    assert (await signed("DELETE", f"/rooms/1{ROOMS_API}")).status == 204


async def _identity(signed: Any) -> str:
    response = await signed("POST", "/identities" + IDENTITY_API)
    assert response.status == 201
    return str((await response.json())["identity"]["id"])


async def test_participants_must_be_existing_identities(signed: Any, access_key: bytes) -> None:
    ada, bob = await _identity(signed), await _identity(signed)
    never_made = new_identity_id(access_key)  # well formed, of this resource, never created
    body = {"participants": {ada: {"role": "Presenter"}, never_made: {"role": "Attendee"}}}
    message = await _error(await signed("POST", "/rooms" + ROOMS_API, body))
    assert f"participant {never_made} is not an existing identity" in message
    assert await _rooms(signed) == []

    body = {"participants": {ada: {"role": "Presenter"}, bob: {"role": "Consumer"}}}
    room = await (await signed("POST", "/rooms" + ROOMS_API, body)).json()
    participants = f"/rooms/{room['id']}/participants{ROOMS_API}"
    patch = {"participants": {never_made: {"role": "Attendee"}}}
    assert "not an existing identity" in await _error(await signed("PATCH", participants, patch))

    # Deleting an identity takes it out of its rooms; removing it afterwards is a no-op.
    assert (await signed("DELETE", f"/identities/{bob}{IDENTITY_API}")).status == 204
    listed = await (await signed("GET", participants)).json()
    assert listed["value"] == [{"rawId": ada, "role": "Presenter"}]
    response = await signed("PATCH", participants, {"participants": {bob: None}})
    assert response.status == 200
    patch = {"participants": {bob: {"role": "Attendee"}}}
    assert "not an existing identity" in await _error(await signed("PATCH", participants, patch))


async def test_a_huge_number_is_a_clean_400(signed: Any) -> None:
    raw = b'{"createTokenWithScopes": ["voip"], "expiresInMinutes": ' + b"9" * 5000 + b"}"
    response = await signed("POST", "/identities" + IDENTITY_API, raw)
    assert response.status == 400
    assert await response.json() == {
        "error": {
            "code": "BadRequest",
            "message": "body is not valid JSON: a number has more than 100 digits",
        }
    }
