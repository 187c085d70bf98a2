"""The daemon: start-up, the main loop and its events, the heartbeat, reload and stop."""
