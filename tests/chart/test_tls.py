"""The chart's mutual TLS: one certificate per identity, mounted by each pod, from cert-manager or
generated once by Helm; probes on the plaintext health-only port."""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.chart.rendering import CHART_DIR, Obj, load_values, objects, of_kind

IDENTITIES = {"gateway", "compliance", "dispatcher", "operator", "cli", "dial-worker", "jobs-worker"}


def _tls_secret_of(deployment: Obj) -> str:
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    (tls,) = [v for v in volumes if v["name"] == "tls"]
    name: str = tls["secret"]["secretName"]
    return name


def test_each_deployment_mounts_its_own_identity() -> None:
    deployments = of_kind(objects({}), "Deployment")
    mounted = {name: _tls_secret_of(d) for name, d in deployments.items()}
    assert mounted == {
        "lf-leadflow-gateway": "lf-leadflow-tls-gateway",
        "lf-leadflow-compliance": "lf-leadflow-tls-compliance",
        "lf-leadflow-dispatcher": "lf-leadflow-tls-dispatcher",
        "lf-leadflow-operator": "lf-leadflow-tls-operator",
        "lf-leadflow-worker-dial-urgent": "lf-leadflow-tls-dial-worker",
        "lf-leadflow-worker-dial": "lf-leadflow-tls-dial-worker",
        "lf-leadflow-worker-background": "lf-leadflow-tls-jobs-worker",
    }
    for d in deployments.values():
        env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["LEADFLOW_TLS_CERT_FILE"] == "/etc/leadflow/tls/tls.crt"
        assert env["LEADFLOW_TLS_KEY_FILE"] == "/etc/leadflow/tls/tls.key"
        assert env["LEADFLOW_TLS_CA_FILE"] == "/etc/leadflow/tls/ca.crt"


def test_generated_certificates_name_their_identity_and_chain_to_one_ca() -> None:
    secrets = of_kind(objects({}), "Secret")
    ca = x509.load_pem_x509_certificate(base64.b64decode(secrets["lf-leadflow-tls-ca"]["data"]["tls.crt"]))
    for identity in IDENTITIES:
        data = secrets[f"lf-leadflow-tls-{identity}"]["data"]
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == f"spiffe://leadflow.local/{identity}"
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        assert base64.b64decode(data["ca.crt"]) == base64.b64decode(
            secrets["lf-leadflow-tls-ca"]["data"]["tls.crt"]
        )
    server = x509.load_pem_x509_certificate(
        base64.b64decode(secrets["lf-leadflow-tls-compliance"]["data"]["tls.crt"])
    )
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "lf-leadflow-compliance" in names.get_values_for_type(x509.DNSName)


def test_cert_manager_issues_every_identity_with_its_spiffe_uri() -> None:
    objs = objects(load_values(CHART_DIR / "ci" / "cert-manager-values.yaml"))
    certs: dict[str, Any] = {
        n: c for n, c in of_kind(objs, "Certificate").items() if not c["spec"].get("isCA")
    }
    assert {c["spec"]["secretName"] for c in certs.values()} == {f"lf-leadflow-tls-{i}" for i in IDENTITIES}
    for identity in IDENTITIES:
        spec = certs[f"lf-leadflow-tls-{identity}"]["spec"]
        assert spec["uris"] == [f"spiffe://leadflow.local/{identity}"]
        assert spec["issuerRef"]["name"] == "lf-leadflow-tls-ca"
    # No chart-generated key material when cert-manager issues it.
    assert not [n for n in of_kind(objs, "Secret") if n.startswith("lf-leadflow-tls-")]


def test_grpc_probes_use_the_health_only_port() -> None:
    deployments = of_kind(objects({}), "Deployment")
    for name in ("lf-leadflow-compliance", "lf-leadflow-dispatcher"):
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["grpc"]["port"] == 8086
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["LEADFLOW_HEALTH_ADDR"] == "0.0.0.0:8086"


def test_compliance_alone_mounts_the_keyring() -> None:
    objs = objects({})
    secret = of_kind(objs, "Secret")["lf-leadflow-keyring"]
    key = base64.b64decode(base64.b64decode(secret["data"]["k1.key"]))
    assert len(key) == 32
    for name, d in of_kind(objs, "Deployment").items():
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        if name == "lf-leadflow-compliance":
            assert volumes["keyring"]["secret"]["secretName"] == "lf-leadflow-keyring"
            assert env["LEADFLOW_KEYRING_DIR"] == "/etc/leadflow/keyring"
            assert env["LEADFLOW_KEYRING_AUTOCREATE"] == "false"
        else:
            assert "keyring" not in volumes
            assert "LEADFLOW_KEYRING_DIR" not in env


def test_every_pod_runs_as_production() -> None:
    # Production refuses test hooks (a shifted clock) and caller-chosen evaluation instants.
    for d in of_kind(objects({}), "Deployment").values():
        env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["LEADFLOW_ENVIRONMENT"] == "production"
