"""Which command lines go to a child cluster, and how they split into our options and kubectl's arguments.

Imported by `cli` on every run, so it imports nothing: `childcluster` (the HTTP client, the kubeconfig
loader) is imported only when a command line names --cluster-id or another child option.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


class RoutingError(Exception):
    """A command line that cannot go to a child cluster; one line for the user."""


# our options (--opt VALUE or --opt=VALUE) and the attribute of ChildArgs each sets
VALUE_OPTIONS = {"--cluster-id": "cluster_id", "--child-kubeconfig": "child_kubeconfig",
                 "--clusternet-as": "as_user", "--clusternet-as-uid": "as_uid",
                 "--clusternet-as-group": "as_groups", "--kubeconfig": "kubeconfig", "--context": "context"}
CHILD_OPTIONS = ("--cluster-id", "--child-kubeconfig", "--clusternet-as", "--clusternet-as-uid",
                 "--clusternet-as-group")
_PARENT_ONLY = "would change the connection to the parent's proxy that --cluster-id builds: set it in the " \
               "parent kubeconfig (or choose one with --kubeconfig/--context)"
# kubectl flags that would undo the routing: the generated kubeconfig is the connection
CONFLICTING = {
    "--as": "impersonates on the parent, where the proxy needs user clusternet: use --clusternet-as to "
            "impersonate in the child",
    "--as-group": "impersonates on the parent: use --clusternet-as-group to impersonate in the child",
    "--as-uid": "impersonates on the parent: use --clusternet-as-uid to impersonate in the child",
    "--token": "would replace the parent credentials: the child's token comes from --child-kubeconfig",
    **{flag: _PARENT_ONLY for flag in ("--server", "-s", "--username", "--password", "--client-certificate",
                                       "--client-key", "--certificate-authority", "--insecure-skip-tls-verify",
                                       "--tls-server-name")},
}
# not --user and --cluster: `create rolebinding --user=alice` has its own, and kubectl itself says that the
# generated kubeconfig has no user or cluster of another name


@dataclass
class ChildArgs:
    """The command line split into our options and what goes to kubectl (in order)."""

    cluster_id: str | None = None
    child_kubeconfig: str | None = None
    as_user: str | None = None
    as_uid: str | None = None
    as_groups: list[str] = field(default_factory=list)
    kubeconfig: str | None = None
    context: str | None = None
    debug: bool = False
    kubectl_args: list[str] = field(default_factory=list)


def option_name(token: str) -> str:
    return token.partition("=")[0] if token.startswith("--") else token


def wants_child(argv: Sequence[str]) -> bool:
    """Whether the command line names one of the child options (before any `--`)."""
    for token in argv:
        if token == "--":
            return False
        if option_name(token) in CHILD_OPTIONS:
            return True
    return False


def split_args(argv: Sequence[str]) -> ChildArgs:
    """Our options out of the command line, wherever they are (before `--`); the rest is kubectl's."""
    args = ChildArgs()
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            args.kubectl_args.extend(argv[i:])
            break
        name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if name in VALUE_OPTIONS:
            if not eq:
                if i + 1 >= len(argv):
                    raise RoutingError(f"{name} needs a value")
                i += 1
                value = argv[i]
            if not value:
                raise RoutingError(f"{name} needs a value")
            attr = VALUE_OPTIONS[name]
            if attr == "as_groups":
                args.as_groups.append(value)
            else:
                setattr(args, attr, value)
        elif token == "--debug":
            args.debug = True
        else:
            args.kubectl_args.append(token)
        i += 1
    return args


def validate(args: ChildArgs) -> None:
    """RoutingError for a command line that cannot work, before anything is read or connected."""
    if not args.cluster_id:
        raise RoutingError("--child-kubeconfig and --clusternet-as* work only with --cluster-id ID (the child "
                          "cluster's id or ManagedCluster name)")
    if not args.child_kubeconfig:
        raise RoutingError("--cluster-id needs --child-kubeconfig FILE with the child's own credentials (a token): "
                          "the hub has none of its own for children, and the parent's are never sent to one")
    if (args.as_groups or args.as_uid) and not args.as_user:
        raise RoutingError("--clusternet-as-group and --clusternet-as-uid need --clusternet-as USER (Kubernetes "
                          "impersonates groups and uids only together with a user)")
    if not args.kubectl_args:
        raise RoutingError("--cluster-id needs a kubectl command to run in the child, e.g. kubectl clusternet "
                          "--cluster-id ID --child-kubeconfig FILE get pods")
    for token in args.kubectl_args:
        if token == "--":
            break
        name = option_name(token)
        if name in CONFLICTING:
            raise RoutingError(f"{name} cannot be used with --cluster-id: it {CONFLICTING[name]}")


# kubectl verbs Clusternet's plugin (or kubectl) has and we run only in a child; for those that make sense on
# templates, how to get the same effect with our commands
_EDIT_THE_FILE = "change the template's file and run kubectl clusternet apply -f FILE again"
CHILD_ONLY_VERBS = {
    "create": "kubectl clusternet apply -f FILE stores templates (write one with kubectl create ... "
              "--dry-run=client -o yaml)",
    "edit": _EDIT_THE_FILE, "label": _EDIT_THE_FILE, "annotate": _EDIT_THE_FILE, "scale": _EDIT_THE_FILE,
    "patch": _EDIT_THE_FILE, "replace": _EDIT_THE_FILE, "set": _EDIT_THE_FILE,
    "api-resources": "templates may be of any kind the parent serves: kubectl api-resources on the parent lists them",
    **{verb: "" for verb in ("exec", "logs", "port-forward", "attach", "cp", "top", "debug", "events", "rollout",
                             "wait", "explain", "diff", "auth", "run", "expose", "autoscale", "cordon", "uncordon",
                             "drain", "taint", "api-versions", "cluster-info", "proxy", "certificate")},
}


def child_only_message(verb: str) -> str:
    """The one line for a kubectl verb given without --cluster-id."""
    hint = CHILD_ONLY_VERBS.get(verb, "")
    where = f"; for templates, {hint}" if hint else ""
    return (f"{verb} runs in one child cluster: kubectl clusternet --cluster-id ID --child-kubeconfig FILE {verb} "
            f"...{where}")
