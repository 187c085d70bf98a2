"""The TOML configuration: sections declared once as typed dataclasses, read strictly.

Where to look: ``sections`` declares every key (type, default, check, doc, live) on the field
that holds it; ``schema`` reads those declarations as TOML keys; ``loading`` validates a file into
a ``Config``; ``document`` writes init-config's file; ``reload`` says what SIGHUP may change.
"""

from __future__ import annotations

from sir_convert_a_lot.config.document import default_document, render_default
from sir_convert_a_lot.config.hooks import HooksSection
from sir_convert_a_lot.config.loading import load, parse
from sir_convert_a_lot.config.reload import (
    LIVE_KEYS,
    LIVE_PROFILE_FIELDS,
    Reconfigurable,
    changed_keys,
    flatten,
    not_live,
)
from sir_convert_a_lot.config.schema import PROFILE_KEYS, SCHEMA, Key
from sir_convert_a_lot.config.sections import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_MODELS_PATH,
    DEFAULT_ROOT,
    INSTANCE_NAME_MAX,
    INSTANCE_NAME_RULE,
    MIB,
    PATH_KEYS,
    Config,
    ConversionSection,
    EngineSection,
    Governance,
    GpuSection,
    InstancesSection,
    LoggingSection,
    MetricsSection,
    OutputSection,
    Paths,
    RetrySection,
    ServiceSection,
    WatchSection,
    default_instance_name,
    instance_name_problem,
    listen_address,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_MODELS_PATH",
    "DEFAULT_ROOT",
    "INSTANCE_NAME_MAX",
    "INSTANCE_NAME_RULE",
    "LIVE_KEYS",
    "LIVE_PROFILE_FIELDS",
    "MIB",
    "PATH_KEYS",
    "PROFILE_KEYS",
    "SCHEMA",
    "Config",
    "ConversionSection",
    "EngineSection",
    "Governance",
    "GpuSection",
    "HooksSection",
    "InstancesSection",
    "Key",
    "LoggingSection",
    "MetricsSection",
    "OutputSection",
    "Paths",
    "Reconfigurable",
    "RetrySection",
    "ServiceSection",
    "WatchSection",
    "changed_keys",
    "default_document",
    "default_instance_name",
    "flatten",
    "instance_name_problem",
    "listen_address",
    "load",
    "not_live",
    "parse",
    "render_default",
]
