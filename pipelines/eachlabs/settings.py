"""Constants of the Eachlabs Workflows API and of this loader's defaults."""

DEFAULT_BASE_URL = "https://workflows.eachlabs.run/api/v1"
API_KEY_HEADER = "X-API-Key"

#: Execution statuses after which an execution never changes again.
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})

DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 256
#: The API long-polls a running execution for `timeout` seconds (1-30, default 10 server-side).
#: We always send a short one so a running execution answers at once with its current state.
DEFAULT_LONG_POLL_TIMEOUT_S = 1
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF_BASE_S = 0.5
DEFAULT_MAX_RETRY_DELAY_S = 30.0
#: Executions normalised into one columnar batch.
DEFAULT_BATCH_SIZE = 2000
#: ...and at most about this much text per batch, so memory does not follow payload size.
DEFAULT_BATCH_MAX_BYTES = 32 * 1024 * 1024
#: A load commits to DuckDB (one complete dlt load) after this many executions or this many
#: seconds, whichever comes first: an interrupt loses at most the chunk in flight, and memory
#: is bounded by the chunk rather than by the run.
DEFAULT_CHUNK_EXECUTIONS = 10_000
DEFAULT_CHUNK_SECONDS = 60.0

#: Statuses worth another try: rate limiting and transient server errors.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Seconds a load waits for another load into the same DuckDB file to finish (`--lock-wait`).
DEFAULT_LOCK_WAIT_S = 30.0
