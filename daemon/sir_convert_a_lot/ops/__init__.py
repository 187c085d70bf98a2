"""What operators touch: the command line, doctor, status, systemd and the journal."""
