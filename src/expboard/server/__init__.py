"""The expboard tracking server: the store over HTTP (``expboard server``).

Modules: ``app`` (the ASGI app and its routes), ``auth`` (bearer tokens, size limits), ``serve`` (the
command and uvicorn), ``process`` (a server in a child process, for tests and benchmarks), ``devpg`` (a
throwaway PostgreSQL). Importing this package imports none of them: the web stack is the ``server`` extra.
"""
