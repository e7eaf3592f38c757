"""Constants of the webhook receiver: the defaults of its flags and the spool's file names.

The spool format is a contract with the loader (`load --from-spool`): see `spool.py`.
"""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"  # a reverse proxy in front terminates TLS (docs/webhook.md)
DEFAULT_PORT = 8787
#: Largest body accepted (32 MiB); a larger one gets 413 without being read.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
#: The open spool file is closed (renamed to .jsonl) once it holds this many bytes (64 MiB)...
DEFAULT_ROTATE_BYTES = 64 * 1024 * 1024
#: ...or once its first body is this old, so the loader never waits long for a file.
DEFAULT_ROTATE_SECONDS = 60.0

#: Worker threads answering requests. A thread waits for the fsync covering its body, so this
#: is also the most bodies one fsync can cover (group commit); slow clients cost no thread
#: (waitress reads requests in its I/O loop and hands a thread only complete ones).
WORKER_THREADS = 32
#: On SIGTERM / SIGINT, requests already being received or answered get this long to finish.
DRAIN_TIMEOUT_S = 20.0
#: Idle keep-alive connections are closed after this long.
IDLE_CONNECTION_TIMEOUT_S = 60

#: Names inside the spool directory.
SPOOL_PREFIX = "spool-"
OPEN_SUFFIX = ".part"
CLOSED_SUFFIX = ".jsonl"
LOCK_FILE_NAME = ".receiver.lock"
LOADED_DIR_NAME = "loaded"
#: UTC time in a spool file's name: names sort by time.
NAME_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"

#: The webhook path; the token follows it.
WEBHOOK_PATH_PREFIX = "/webhooks/"
HEALTH_PATH = "/healthz"
