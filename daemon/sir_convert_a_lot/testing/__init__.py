"""Harness shared by the tests and the tools: a test config on real folders, generated PDFs,
the daemon run as systemd runs it, a private Samba share, stand-in docling models.

It ships with the package (as ``structlog.testing`` does) so that ``tools/`` run from the
repository without importing ``tests`` or editing ``sys.path``; the daemon never imports it.
"""
