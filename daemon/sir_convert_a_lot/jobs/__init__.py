"""A claimed file's life: the spool, the checks before conversion (``source_checks``, in the
supervisor, without a parser), the lifecycle that decides its fate, publishing."""
