"""`eachlabs-pipeline webhook`: receive the Eachlabs engine's webhook POSTs into a spool.

- `settings.py`: the receiver's constants (defaults of its flags, the spool's file names).
- `spool.py`: the spool directory: one appending writer with group commit, rotation, the
  receiver's lock and what `GET /healthz` reports. No HTTP here.
- `server.py`: the WSGI app (routing, token check, body checks) on waitress, and the run loop
  that stops gracefully on SIGTERM / SIGINT.
- `cli.py`: the subcommand's flags; imports neither waitress nor dlt until the command runs.

The loader side (`eachlabs-pipeline load --from-spool DIR`) reads what the receiver wrote;
the format is described in `spool.py` and docs/webhook.md.
"""
