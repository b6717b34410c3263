"""The App framework: it knows GitHub and Kubernetes, not training or deploying.

- A delivery arrives at `webhook_endpoint` → `ingest` verifies and stores it in the `inbox` → a
  `worker` claims it → the `router` runs the handlers the features registered, with a `context`.
  Ingest and workers may run apart (`orbit serve --role`); `ingest_grants` is what the workers let
  an ingest's own PostgreSQL role do, and `inbox_schema` keeps the workers safe from that role.
- `events` reads each event orbit handles into a small typed model; `runs` is the one contract
  between a dispatched workflow run and the bot.
- `github/` and `kube_api` are the clients; `settings`, `metrics`, `logs` (JSON lines with the
  delivery, repository, PR and run), `errors`, `installations`.
- `redelivery` asks GitHub to redeliver what failed while orbit could not take it; `forwarding` feeds
  a local bot from the same deliveries API (`orbit dev`); `registration` registers the App from its
  manifest (`orbit app register`).
- `app` is the composition root: the only module that imports every feature and wires it;
  `cli` (the `orbit` command) and `local` (the demo on this machine) stand beside it.
"""
