"""The App framework: it knows GitHub and Kubernetes, not training or deploying.

- A delivery arrives at `webhook_endpoint` → `ingest` verifies and stores it in the `inbox` → a
  `worker` claims it → the `router` runs the handlers the features registered, with a `context`.
- `events` reads each event orbit handles into a small typed model; `runs` is the one contract
  between a dispatched workflow run and the bot.
- `github/` and `kube_api` are the clients; `settings`, `metrics`, `errors`, `installations`.
- `app` is the composition root: the only module that imports every feature and wires it;
  `cli` (the `orbit` command) and `local` (the demo on this machine) stand beside it.
"""
