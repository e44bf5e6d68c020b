"""The real Graph API client against the fake Graph server on loopback."""

from __future__ import annotations

import pytest

from leadflow_gateway.meta_graph import GraphLeadGone, GraphUnavailable, MetaGraphClient
from tests.fakes.meta_graph import serve_graph


async def test_fetches_field_data_with_the_page_token() -> None:
    with serve_graph("page-token") as (url, state):
        state.add_lead(
            "111", {"full_name": ["Ada"], "phone_number": ["+13055550123"]}, "2024-03-01T10:00:00+0000"
        )
        client = MetaGraphClient(url, timeout=2, attempts=3)
        try:
            doc = await client.fetch_lead("111", "page-token")
            assert doc["field_data"][0] == {"name": "full_name", "values": ["Ada"]}
            assert state.requests == ["/v21.0/111"]
            with pytest.raises(GraphLeadGone):
                await client.fetch_lead("999", "page-token")
            # A bad token is worth a redelivery (the tenant may fix it): temporary.
            with pytest.raises(GraphUnavailable):
                await client.fetch_lead("111", "wrong")
        finally:
            await client.close()


async def test_retries_server_errors() -> None:
    with serve_graph("t") as (url, state):
        state.add_lead("5", {"email": ["a@example.com"]}, "2024-03-01T10:00:00+0000")
        client = MetaGraphClient(url, timeout=2, attempts=3)
        try:
            state.fail_next = 2
            assert (await client.fetch_lead("5", "t"))["id"] == "5"
            state.fail_next = 3
            with pytest.raises(GraphUnavailable):
                await client.fetch_lead("5", "t")
        finally:
            await client.close()


async def test_unreachable_graph_is_temporary() -> None:
    client = MetaGraphClient("http://127.0.0.1:9/v21.0", timeout=0.5, attempts=2)
    try:
        with pytest.raises(GraphUnavailable):
            await client.fetch_lead("5", "t")
    finally:
        await client.close()
