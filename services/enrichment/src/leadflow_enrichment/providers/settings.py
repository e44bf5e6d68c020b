"""Deployment defaults for the providers; the enrichment settings class extends this one."""

from __future__ import annotations

from pydantic import Field

from leadflow_core.settings import CommonSettings


class ProviderSettings(CommonSettings):
    """`LEADFLOW_*` settings that choose and tune the providers when a tenant names none."""

    # Which provider a tenant gets when its config leaves the name empty.
    crm_provider: str = "local"  # local | salesforce | hubspot
    dialer_provider: str = "simulator"  # simulator | twilio
    llm_provider: str = "rules"  # rules | openai
    # The paid AI scorer only for tenants whose plan has "ai_enrichment".
    llm_requires_plan_feature: bool = True

    # HTTP clients: every call to an outside system has an explicit deadline.
    provider_connect_timeout_seconds: float = 3.0
    provider_timeout_seconds: float = 10.0

    # Dial simulator: outcomes as "status:weight,..." (Twilio's final statuses), chosen
    # deterministically from the attempt id so a replay gets the same outcome; or
    # "seq:busy,completed": by the lead's call count (first call busy, later ones completed).
    simulator_outcomes: str = "completed"
    # CallDuration reported for answered calls (seconds of talk, not waited for).
    simulator_duration_seconds: int = 45
    # Real time between the simulated status callbacks (ringing, in-progress, final).
    simulator_step_seconds: float = 0.05
    # Signs the simulator's callbacks when the tenant's dialer config has no auth_token.
    simulator_auth_token: str = "leadflow-simulator-token"  # noqa: S105 (local default, not a secret)
    simulator_account_sid: str = "ACsimulator00000000000000000000000"
    simulator_from_number: str = "+15005550006"
    # Bounded delivery of each callback (connection errors and 5xx are retried).
    simulator_callback_attempts: int = 3
    # Callbacks of different calls in flight at once (a call's own stay in order). A carrier
    # posts them from many senders; with 8 the mesh saw about two per gateway batch under load,
    # each batch paying its lock, reads and commit (see README, issue 12).
    simulator_callback_lanes: int = Field(default=32, ge=1, le=256)

    # The deployment's own vendor accounts, used only for tenants that name no provider (so
    # take the deployment default); a tenant naming a provider must bring its own credentials.
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from_number: str = ""
    salesforce_instance_url: str = ""
    salesforce_access_token: str = ""
    hubspot_access_token: str = ""
    openai_api_key: str = ""
    # Vendor endpoints; a tenant with its own credentials may override them in its options.
    twilio_base_url: str = "https://api.twilio.com"
    hubspot_base_url: str = "https://api.hubapi.com"
    salesforce_api_version: str = "v61.0"
    openai_base_url: str = "https://api.openai.com"
    openai_model: str = "gpt-4o-mini"
    openai_max_tokens: int = 300
    # Characters of lead text sent to the model at most (bounds cost and prompt injection surface).
    openai_max_prompt_chars: int = 4000
    openai_timeout_seconds: float = 8.0
    simulator_price_per_minute_usd: str = "0.0140"
    # A JSON file of `ScoringRules` replacing the built-in scoring rules; empty = built-in.
    scorer_rules_path: str = ""
