"""`make bench`: every benchmark of the mesh in one place (never a timed test).

Stages (see `python -m bench --help`): floors of this machine's own stack, durable ACK under wrk
load with per-lead costs and a durability check, the source mix, compliance Evaluate, workers.
"""
