"""Mutual TLS for every gRPC hop: which files a process uses, and credentials built from them.

Each component has its own certificate; its identity is a SPIFFE-style URI SAN such as
`spiffe://leadflow.local/gateway`. Files come from one of two places:

- `LEADFLOW_TLS_CA_FILE`, `LEADFLOW_TLS_CERT_FILE`, `LEADFLOW_TLS_KEY_FILE` (Kubernetes: one
  mounted Secret per component, as cert-manager writes it);
- otherwise `LEADFLOW_TLS_DIR` (default `var/tls`, what `make run` and the tests create) holding
  `ca.crt` and `<identity>.crt`/`<identity>.key`, the identity being the component's own name
  (`set_component`) or `LEADFLOW_TLS_IDENTITY`.

Servers re-read their files when they change (grpcio's dynamic server credentials), so a
renewed certificate is served without a restart; channels read them when they are created.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadflow_core.logs import get_logger

log = get_logger("leadflow.tls")

TRUST_DOMAIN = "leadflow.local"
SPIFFE_PREFIX = f"spiffe://{TRUST_DOMAIN}/"


class TlsNotConfigured(RuntimeError):
    """No certificate for this process: every gRPC hop is mutual TLS, so it cannot start."""


class TlsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_TLS_", extra="ignore")

    # Development and tests: a folder with ca.crt and one <identity>.crt/.key per component.
    dir: str = "var/tls"
    # Production: this process's own files (they win over `dir`).
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    # Which identity's files a process takes from `dir` when its code names none (the CLI, tools).
    identity: str = ""


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()

    def stamp(self) -> tuple[float, ...]:
        """Modification times and sizes: changes when any file is replaced."""
        out: list[float] = []
        for p in (self.ca, self.cert, self.key):
            st = p.stat()
            out += [st.st_mtime_ns, st.st_size, st.st_ino]
        return tuple(out)


_component: str | None = None


def spiffe_id(identity: str) -> str:
    return SPIFFE_PREFIX + identity


def set_component(identity: str | None) -> None:
    """Name this process's component (its certificate in `LEADFLOW_TLS_DIR`); call once in main."""
    global _component
    _component = identity


def files_for(identity: str | None = None) -> TlsFiles:
    """This process's files, or a named identity's files from the TLS directory (dev, tests)."""
    settings = TlsSettings()
    if identity is None and settings.cert_file:
        if not (settings.ca_file and settings.key_file):
            raise TlsNotConfigured(
                "LEADFLOW_TLS_CERT_FILE needs LEADFLOW_TLS_KEY_FILE and LEADFLOW_TLS_CA_FILE"
            )
        return TlsFiles(Path(settings.ca_file), Path(settings.cert_file), Path(settings.key_file))
    name = identity or _component or settings.identity
    if not name:
        raise TlsNotConfigured(
            "no TLS identity: set LEADFLOW_TLS_CERT_FILE/KEY_FILE/CA_FILE or LEADFLOW_TLS_IDENTITY"
        )
    directory = Path(settings.dir)
    found = TlsFiles(directory / "ca.crt", directory / f"{name}.crt", directory / f"{name}.key")
    missing = [str(p) for p in (found.ca, found.cert, found.key) if not p.exists()]
    if missing:
        raise TlsNotConfigured(
            f"TLS files for {name!r} missing: {', '.join(missing)} "
            "(`make run` creates a development CA under var/tls; `leadflow certs create` does it alone)"
        )
    return found


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Require and verify a client certificate; pick up renewed files at the next handshake."""
    ca, cert, key = files.read()
    lock = threading.Lock()
    last = [files.stamp()]

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        with lock:
            try:
                stamp = files.stamp()
                if stamp == last[0]:
                    return None
                ca2, cert2, key2 = files.read()
            except OSError as err:
                # Mid-rotation (a file replaced before the other): keep serving the old pair.
                log.warning("tls_reload_failed", error=type(err).__name__)
                return None
            last[0] = stamp
            log.info("tls_reloaded", cert=str(files.cert))
            return grpc.ssl_server_certificate_configuration([(key2, cert2)], root_certificates=ca2)

    initial = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
    # grpcio documents None from the callback as "no change"; its stubs say otherwise.
    return grpc.dynamic_ssl_server_credentials(
        initial,
        fetch,  # type: ignore[arg-type]
        require_client_authentication=True,
    )


def channel_credentials(identity: str | None = None) -> grpc.ChannelCredentials:
    """Client credentials: our certificate, and the CA every server's certificate must chain to."""
    ca, cert, key = files_for(identity).read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
