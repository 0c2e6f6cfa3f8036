"""`kubectl clusternet`: author feeds as templates on the parent, list them, and preview what a cluster gets.

Installed as the console script `kubectl-clusternet`, so kubectl finds it as a plugin (`python -m
clusternet_kubectl` runs the same CLI).

- Clusternet's own objects (groups apps.clusternet.io and clusters.clusternet.io: Subscriptions, HelmCharts,
  Localizations, ManagedClusters, ...) are real custom resources on the parent: `apply` server-side-applies
  them, `get` lists them with the server's printer columns, `delete` deletes them.
- Everything else (Namespaces, Deployments, other custom resources) is a *template*: `apply` validates it
  with a server-side dry run on the parent and stores it as a Manifest in `clusternet-reserved`, named and
  labelled as Clusternet does; it is never created in the parent itself. `get` and `delete` act on those
  Manifests.
- Objects of kinds the parent does not serve are refused unless annotated
  `apps.clusternet.io/skip-validating: "true"`; such templates use `<lowercase kind>s` as their resource
  name (the plural cannot be discovered) and keep the namespace written in the object (their scope is
  unknown, so no default namespace is added).
- `render` prints the objects one cluster would receive from a Subscription, with the same code the hub
  uses (clusternet_core.rendering.render_generic).

Where we differ from Clusternet's plugin (clusternet/kubectl-clusternet): that one is kubectl's own commands
with a transport that sends every non-Clusternet object to the hub's aggregated `shadow` API, which stores it
as a Manifest. We serve no shadow API, so this CLI writes the Manifests itself and validates templates with a
dry run on the parent instead. It has only the commands Clusternet users need for feeds (apply, get, delete,
describe), plus `render` and `approve`/`deny`, which Clusternet's plugin does not have. With `--cluster-id ID
--child-kubeconfig FILE`, any kubectl command line goes to that child through the hub's proxy, run by the real
kubectl (`routing`, `childcluster`); other kubectl verbs without it are a one-line error saying so.

Layout: `cli` wires the commands (and imports each one only when it runs, so `--help` stays fast);
`session` holds the parent connection; `documents`, `resources`, `targets`, `templates`, `tables`,
`clusters` and `errors` are shared by the commands in `commands/`; `routing` and `childcluster` are
`--cluster-id`.
"""
