"""SIGHUP: the config file read again, through the same gates as at start, and taken only when
every changed key can change while the daemon runs; otherwise the old config stays, whole."""

from __future__ import annotations

from dataclasses import dataclass

from sir_convert_a_lot import config as config_module
from sir_convert_a_lot import logs
from sir_convert_a_lot.config import Config
from sir_convert_a_lot.errors import ConfigError
from sir_convert_a_lot.folders import check_config_permissions

log = logs.get()


@dataclass(frozen=True)
class Reloaded:
    """A config the running daemon may take, and the keys that differ from the old one."""

    config: Config
    changed: list[str]

    def announce(self) -> None:
        """The new log settings first, so that the line saying so obeys them."""
        logs.configure(self.config.logging.level, self.config.logging.format)
        log.info("config_reloaded", changed=self.changed)


def read_again(current: Config) -> Reloaded | None:
    """The file ``current`` came from, read again; None (and logged why) when refused."""
    source = current.source
    if source is None:
        log.error("config_reload_refused", reason="the daemon was not started from a file")
        return None
    try:
        # The same gate as at start: a file others may write could lift the GPU-first lock.
        check_config_permissions(source)
        new = config_module.load(source)
    except ConfigError as exc:
        log.error("config_reload_refused", reason=str(exc), effect="the old config stays")
        return None
    # --instance and --gpu on the command line win over the file, as at start.
    new = new.with_instance_name(current.instances.name).with_device_index(current.gpu.device_index)
    changed = config_module.changed_keys(current, new)
    refused = config_module.not_live(changed)
    if refused:
        log.error(
            "config_reload_refused",
            keys=refused,
            reason="these settings cannot change while the daemon runs; restart it "
            "(systemctl restart) to apply them",
            effect="the old config stays",
        )
        return None
    return Reloaded(new, changed)
