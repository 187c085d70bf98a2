"""Harness shared by the tests and the tools: a test config on real folders, generated PDFs and
documents of every format, the daemon run as systemd runs it, a private Samba share, stand-in
docling models.

It lives beside the package, not in it, so the wheel a GPU server installs carries no Samba
server, model builders or test switches. The development install (``tools/install``) puts the
repository on the venv's path, so tests and ``tools/`` import it as ``harness``; the daemon
never does (tests/test_layers.py checks that).
"""
