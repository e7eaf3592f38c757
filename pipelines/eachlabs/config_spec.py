"""dlt's view of the settings: `EachlabsSettings` as a dlt configuration spec.

Kept apart from `settings.py`, which declares the settings without importing dlt, so that the
CLI can build its flags and answer `--help` and `--version` quickly. The spec adds only what
dlt needs to know: `api_key` and `webhook_token` are secrets (read from .dlt/secrets.toml or
the environment, never from config.toml).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigValueCannotBeCoercedException,
)
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue

from pipelines.eachlabs.errors import ConfigError
from pipelines.eachlabs.settings import NO_KEY_HINT, SECTIONS, SETTING_FIELDS, EachlabsSettings


@configspec
class EachlabsSettingsSpec(BaseConfiguration, EachlabsSettings):
    """`EachlabsSettings` as dlt resolves them (dlt's specs show no field in their repr, and
    `EachlabsSettings.__repr__` never shows the key)."""

    api_key: TSecretStrValue = dataclasses.field(
        default=None, metadata=SETTING_FIELDS["api_key"].metadata
    )
    webhook_token: TSecretStrValue | None = dataclasses.field(
        default=None, metadata=SETTING_FIELDS["webhook_token"].metadata
    )


def resolve_with_dlt(given: Mapping[str, Any], *, accept_partial: bool) -> EachlabsSettings:
    """`given` over dlt's config providers over the defaults; errors as `ConfigError`."""
    try:
        return resolve_configuration(
            EachlabsSettingsSpec(),
            sections=SECTIONS,
            explicit_value=dict(given),
            accept_partial=accept_partial,
        )
    except ConfigFieldMissingException as exc:
        if "api_key" in exc.fields:
            raise ConfigError(f"no API key: {NO_KEY_HINT}") from None
        raise ConfigError(str(exc)) from None
    except ConfigValueCannotBeCoercedException as exc:
        # dlt's own message names neither the setting's layer nor the fix.
        kind = getattr(exc.hint, "__name__", str(exc.hint))
        raise ConfigError(f"{exc.field_name} must be a {kind}: {exc}") from None
