"""Which Scorer, Crm and Dialer a tenant gets, from its provider config and the deployment default.

The actors hold one `ProviderRegistry` per worker process and ask it per job:

    config = tenants.GetProviderConfig(GetProviderConfigRequest(tenant=t, kind="crm"))
    crm = registry.crm(t, config)          # config may be None: the deployment default
    crm.upsert_lead(lead, enrichment)

Clients are cached per (tenant, kind, provider, config) so connection pools are reused, and a
changed config (rotated key) builds a new client.

A tenant's `provider_configs[kind]` (secrets / options) per provider:

    crm     local       -
            salesforce  secrets access_token; options instance_url, api_version, external_id_field
                        (default Leadflow_Id__c), default_company, fit_field, intent_field
            hubspot     secrets access_token; options base_url, fit_property, intent_property,
                        lead_id_property
    dialer  simulator   secrets auth_token (signs callbacks; else LEADFLOW_SIMULATOR_AUTH_TOKEN);
                        options outcomes ("completed:8,busy:1" or "seq:busy,completed"),
                        duration_seconds, account_sid, from_number
            twilio      secrets auth_token; options account_sid, from_number, api_key_sid,
                        base_url, twiml_url or twiml, machine_detection
    llm     rules       -  (LEADFLOW_SCORER_RULES_PATH: a JSON file of ScoringRules)
            openai      secrets api_key; options base_url, model, max_tokens (capped by the
                        deployment's); used only with the plan feature "ai_enrichment"

A tenant that names no provider gets the deployment default (LEADFLOW_CRM_PROVIDER,
LEADFLOW_DIALER_PROVIDER, LEADFLOW_LLM_PROVIDER) and, when configured, the deployment's own
account (LEADFLOW_TWILIO_*, LEADFLOW_SALESFORCE_*, LEADFLOW_HUBSPOT_ACCESS_TOKEN,
LEADFLOW_OPENAI_API_KEY) with the deployment's endpoints.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import Engine

from leadflow.v1.tenants_pb2 import GetProviderConfigResponse
from leadflow_core.db import make_engine
from leadflow_enrichment.failures import ErrorClass, ProviderError
from leadflow_enrichment.providers.base import Crm, Dialer, Scorer
from leadflow_enrichment.providers.local_crm import LocalCrm
from leadflow_enrichment.providers.local_scorer import RuleScorer, ScoringRules
from leadflow_enrichment.providers.settings import ProviderSettings
from leadflow_enrichment.providers.simulator import (
    SEQUENCE_PREFIX,
    DialSimulator,
    SimulatorConfig,
    parse_outcomes,
)
from leadflow_enrichment.providers.status_callbacks import CallbackSender

CRM_PROVIDERS = ("local", "salesforce", "hubspot")
DIALER_PROVIDERS = ("simulator", "twilio")
LLM_PROVIDERS = ("rules", "openai")

T = TypeVar("T")


def provider_name(config: GetProviderConfigResponse | None, default: str, allowed: tuple[str, ...]) -> str:
    """The tenant's provider, else the deployment's; an unknown name is a configuration error."""
    name = (config.provider if config is not None else "") or default
    name = name.strip().lower()
    if name == "local" and "local" not in allowed:
        name = allowed[0]  # "local" means the built-in default of any kind
    if name not in allowed:
        raise ProviderError(
            f"unknown provider {name!r}; expected one of {allowed}", ErrorClass.EXTERNAL, provider=name
        )
    return name


def _secrets(config: GetProviderConfigResponse | None) -> dict[str, str]:
    return dict(config.config.secrets) if config is not None else {}


def _options(config: GetProviderConfigResponse | None) -> dict[str, str]:
    return dict(config.config.options) if config is not None else {}


# Options that point a client somewhere: never honoured together with the deployment's credentials.
_URL_OPTIONS = frozenset({"base_url", "instance_url", "twiml_url"})


def _fingerprint(config: GetProviderConfigResponse | None) -> str:
    """Tells configs apart for the cache; whether the tenant named the provider matters too,
    as only a tenant on the deployment default gets the deployment's account."""
    if config is None:
        return "default"
    digest = hashlib.sha256(config.config.SerializeToString(deterministic=True)).hexdigest()[:16]
    return f"{'named' if config.provider else 'default'}:{digest}"


def _close(client: object) -> None:
    close = getattr(client, "close", None)
    if callable(close):
        close()


class ProviderRegistry:
    """Builds and caches the providers of every tenant for one worker process."""

    def __init__(self, settings: ProviderSettings, engine: Engine | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self._own_engine = engine is None
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], object] = {}
        self._sender: CallbackSender | None = None
        self._rules = (
            ScoringRules.from_file(settings.scorer_rules_path)
            if settings.scorer_rules_path
            else ScoringRules()
        )

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = make_engine(self.settings.database_url)
            return self._engine

    @property
    def callback_sender(self) -> CallbackSender:
        with self._lock:
            if self._sender is None:
                self._sender = CallbackSender(
                    timeout=self.settings.provider_timeout_seconds,
                    attempts=self.settings.simulator_callback_attempts,
                    lanes=self.settings.simulator_callback_lanes,
                )
            return self._sender

    def warm_up(self) -> None:
        """Opens what the deployment's default providers share before the first job needs it.

        Built on first use, the database pool's first connection and the callback sender's HTTP
        client cost the first dial of a fresh worker process ~0.4 s (measured on the first
        emergency after the process started, as a pod scaled up for a burst would see it).
        Raises what opening the database raises; the caller decides whether that matters.
        """
        s = self.settings
        if s.dialer_provider == "simulator":
            _ = self.callback_sender
        if s.dialer_provider == "simulator" or s.crm_provider == "local":
            self.engine.connect().close()  # back to the pool, open, for the first job

    def _cached(self, key: tuple[str, ...], build: Callable[[], T]) -> T:
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found  # type: ignore[return-value]
        built = build()
        with self._lock:
            # Another thread may have won the race; keep one client per key.
            kept = self._cache.setdefault(key, built)
        if kept is not built:
            _close(built)
        return kept  # type: ignore[return-value]

    # --- the three kinds -------------------------------------------------------------------

    def scorer(self, tenant: str, config: GetProviderConfigResponse | None = None) -> Scorer:
        name = provider_name(config, self.settings.llm_provider, LLM_PROVIDERS)
        paid = config is not None and "ai_enrichment" in config.plan_features
        if name == "openai" and self.settings.llm_requires_plan_feature and not paid:
            name = "rules"  # the plan does not pay for AI scoring
        if name == "rules":
            return self._cached(("llm", "rules"), lambda: RuleScorer(self._rules))
        return self._cached(("llm", tenant, name, _fingerprint(config)), lambda: self._openai(config))

    def crm(self, tenant: str, config: GetProviderConfigResponse | None = None) -> Crm:
        name = provider_name(config, self.settings.crm_provider, CRM_PROVIDERS)
        if name == "local":
            return self._cached(("crm", "local"), lambda: LocalCrm(self.engine))
        if name == "salesforce":
            return self._cached(("crm", tenant, name, _fingerprint(config)), lambda: self._salesforce(config))
        return self._cached(("crm", tenant, name, _fingerprint(config)), lambda: self._hubspot(config))

    def dialer(self, tenant: str, config: GetProviderConfigResponse | None = None) -> Dialer:
        name = provider_name(config, self.settings.dialer_provider, DIALER_PROVIDERS)
        key = ("dialer", tenant, name, _fingerprint(config))
        if name == "simulator":
            return self._cached(key, lambda: self._simulator(tenant, config))
        return self._cached(key, lambda: self._twilio(config))

    def close(self) -> None:
        """Stops the callback thread (delivering what is due) and closes every HTTP pool."""
        with self._lock:
            clients = list(self._cache.values())
            self._cache.clear()
            sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()
        for client in clients:
            _close(client)
        if self._own_engine and self._engine is not None:
            self._engine.dispose()

    # --- builders --------------------------------------------------------------------------

    def _deployment_account(self, name: str) -> tuple[dict[str, str], dict[str, str]]:
        s = self.settings
        accounts: dict[str, tuple[dict[str, str], dict[str, str]]] = {
            "twilio": (
                {"auth_token": s.twilio_auth_token},
                {"account_sid": s.twilio_account_sid, "from_number": s.twilio_from_number},
            ),
            "salesforce": (
                {"access_token": s.salesforce_access_token},
                {"instance_url": s.salesforce_instance_url},
            ),
            "hubspot": ({"access_token": s.hubspot_access_token}, {}),
            "openai": ({"api_key": s.openai_api_key}, {}),
        }
        secrets, options = accounts.get(name, ({}, {}))
        return {k: v for k, v in secrets.items() if v}, {k: v for k, v in options.items() if v}

    def _credentials(
        self, name: str, config: GetProviderConfigResponse | None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The tenant's own secrets and options; for a tenant on the deployment default, the
        deployment's account (when configured) with the deployment's endpoints only, so a
        tenant's option can never send the deployment's credentials elsewhere."""
        secrets, options = _secrets(config), _options(config)
        if config is not None and config.provider:
            return secrets, options
        own_secrets, own_options = self._deployment_account(name)
        if not own_secrets:
            return secrets, options
        options = {k: v for k, v in options.items() if k not in _URL_OPTIONS}
        return {**secrets, **own_secrets}, {**options, **own_options}

    def _simulator(self, tenant: str, config: GetProviderConfigResponse | None) -> DialSimulator:
        s = self.settings
        options, secrets = _options(config), _secrets(config)
        outcomes = options.get("outcomes") or s.simulator_outcomes
        try:
            parsed = parse_outcomes(outcomes)
        except ValueError as err:
            raise ProviderError(
                f"simulator outcomes: {err}", ErrorClass.EXTERNAL, provider="simulator"
            ) from err
        sim = SimulatorConfig(
            outcomes=parsed,
            sequence=outcomes.startswith(SEQUENCE_PREFIX),
            duration_seconds=int(options.get("duration_seconds") or s.simulator_duration_seconds),
            step_seconds=s.simulator_step_seconds,
            auth_token=secrets.get("auth_token") or s.simulator_auth_token,
            account_sid=options.get("account_sid") or s.simulator_account_sid,
            from_number=options.get("from_number") or s.simulator_from_number,
            price_per_minute_usd=Decimal(s.simulator_price_per_minute_usd),
            pii_hash_key=s.pii_hash_key,
        )
        return DialSimulator(self.engine, tenant, sim, self.callback_sender)

    def _twilio(self, config: GetProviderConfigResponse | None) -> Dialer:
        from leadflow_enrichment.providers.twilio import TwilioDialer

        return TwilioDialer.from_config(self.settings, *self._credentials("twilio", config))

    def _salesforce(self, config: GetProviderConfigResponse | None) -> Crm:
        from leadflow_enrichment.providers.salesforce import SalesforceCrm

        return SalesforceCrm.from_config(self.settings, *self._credentials("salesforce", config))

    def _hubspot(self, config: GetProviderConfigResponse | None) -> Crm:
        from leadflow_enrichment.providers.hubspot import HubSpotCrm

        return HubSpotCrm.from_config(self.settings, *self._credentials("hubspot", config))

    def _openai(self, config: GetProviderConfigResponse | None) -> Scorer:
        from leadflow_enrichment.providers.openai_scorer import OpenAiScorer

        return OpenAiScorer.from_config(self.settings, *self._credentials("openai", config))
