"""`leadflow deadletters ...` against the real dispatcher process."""

from __future__ import annotations

import argparse

import pytest

from leadflow.v1 import dispatcher_pb2, dispatcher_pb2_grpc
from leadflow_cli.commands import deadletters
from leadflow_core.testing import ServiceProcess

from .conftest import dial_now, make_lead


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="leadflow")
    deadletters.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_list_show_replay_resolve_purge(
    dispatcher_proc: ServiceProcess,
    stub: dispatcher_pb2_grpc.DispatcherServiceStub,
    tenant: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LEADFLOW_DISPATCHER_ADDR", dispatcher_proc.addr)
    lead = stub.SubmitLead(
        dispatcher_pb2.SubmitLeadRequest(lead=make_lead(tenant, "cli"), decision=dial_now())
    )
    dl = stub.RecordDeadLetter(
        dispatcher_pb2.DeadLetter(
            tenant=tenant,
            queue="dial.high",
            lead_id=lead.lead_id,
            actor="dial",
            error_class="validation",
            error="400 invalid To",
            attempts=1,
            job_kind="dial",
            job_attempt=1,
        )
    )
    assert run(["deadletters", "list", tenant]) == 0
    out = capsys.readouterr().out
    assert dl.dead_letter_id in out
    assert "400 invalid To" in out
    assert run(["deadletters", "show", tenant, dl.dead_letter_id]) == 0
    assert lead.lead_id in capsys.readouterr().out
    assert run(["deadletters", "replay", tenant, dl.dead_letter_id]) == 0
    assert "replayed 1" in capsys.readouterr().out
    assert run(["deadletters", "resolve", tenant, dl.dead_letter_id, "--note", "bad number"]) == 0
    assert "resolved" in capsys.readouterr().out
    stub.RecordDeadLetter(dispatcher_pb2.DeadLetter(tenant=tenant, queue="enrich", lead_id=lead.lead_id))
    assert run(["deadletters", "purge", tenant, "--queue", "enrich"]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert run(["deadletters", "list", tenant]) == 0
    assert "no dead letters" in capsys.readouterr().out
