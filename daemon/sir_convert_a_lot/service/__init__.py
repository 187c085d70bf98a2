"""The daemon: start-up, the threads that tie intake, jobs and engine together."""
