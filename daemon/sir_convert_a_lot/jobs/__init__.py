"""A claimed file's life: the spool, the lifecycle that decides its fate, publishing."""
