"""One module per ``sir-convert`` command: its arguments and what it does, in one read. The
heavy parts (the service, the engine, docling) are imported when the command runs, so that
``--help`` and the quick commands start fast."""
