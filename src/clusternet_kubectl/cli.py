"""The `kubectl-clusternet` command line: options, help texts, and which command module runs.

Start-up matters (kubectl users type these by hand, and bench/propagation.py times `apply` from its start):
this module imports only click, and each sub-command imports its module, the HTTP client and the pipeline
when it runs, so `--help` and `version` load none of them and `get` does not load `render`'s pipeline.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from clusternet_api import __version__

if TYPE_CHECKING:
    from clusternet_kubectl.documents import Document

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    """Connection options, given before or after the sub-command (the later wins, as with kubectl)."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    debug: bool = False


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Keep a connection option in the Options all levels share; a later occurrence overwrites."""
    if value:
        setattr(ctx.ensure_object(Options), str(param.name), value)


def connection_options(f: F) -> F:
    """--kubeconfig, --context, -n/--namespace and --debug, accepted before or after the sub-command."""
    f = click.option("--debug", is_flag=True, callback=_remember, expose_value=False,
                     help="Show the traceback of an error instead of its one-line message.")(f)
    f = click.option("-n", "--namespace", callback=_remember, expose_value=False,
                     help="Namespace (default: the context's, else default).")(f)
    f = click.option("--context", callback=_remember, expose_value=False,
                     help="Kubeconfig context to use (default: the current context).")(f)
    f = click.option("--kubeconfig", metavar="PATH", callback=_remember, expose_value=False,
                     help="Kubeconfig of the parent cluster (default: the files of $KUBECONFIG merged, then "
                          "~/.kube/config).")(f)
    return f


def _run(command: Callable[..., Any], *args: Any, interrupted: int = 130) -> None:
    """Run a command module's coroutine against the parent with the options given (see session.run); Ctrl-C
    exits with `interrupted`."""
    from clusternet_kubectl import session

    opts = click.get_current_context().find_object(Options) or Options()
    session.run(command, *args, kubeconfig=opts.kubeconfig, context=opts.context, namespace=opts.namespace,
                debug=opts.debug, interrupted=interrupted)


OUTPUT_FORMATS = ("wide", "yaml", "json", "name")
TEMPLATE_FORMATS = ("jsonpath", "jsonpath-file", "custom-columns")


def _output_format(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """kubectl's -o forms we print; anything else is kubectl's one-line error (checked before connecting)."""
    if value is None or value in OUTPUT_FORMATS:
        return value
    name, sep, arg = value.partition("=")
    if sep and name in TEMPLATE_FORMATS and arg:
        return value
    allowed = ",".join(sorted(OUTPUT_FORMATS + TEMPLATE_FORMATS))
    if name in TEMPLATE_FORMATS:
        click.echo(f"error: {name} format specified but no template given", err=True)
    else:
        click.echo(f'error: unable to match a printer suitable for the output format "{value}", allowed formats '
                   f"are: {allowed}", err=True)
    ctx.exit(1)


def _documents(filenames: tuple[str, ...], recursive: bool) -> list[Document]:
    """The objects of the -f arguments; a local problem (missing file, bad YAML) exits before connecting."""
    from clusternet_kubectl.documents import load_documents
    from clusternet_kubectl.errors import PluginError

    try:
        return load_documents(filenames, recursive)
    except (PluginError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _kustomized(directory: str) -> list[Document]:
    """The objects `kubectl kustomize DIR` builds; a missing kubectl or a failed build exits before connecting."""
    from clusternet_kubectl.documents import kustomize
    from clusternet_kubectl.errors import PluginError

    try:
        return kustomize(directory)
    except PluginError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


PLUGIN_COMMAND = "kubectl clusternet"
"""How users type the plugin (kubectl runs it as `kubectl-clusternet`), in usage errors' help hints."""


class UsageError(click.ClickException):
    """A wrong command line as kubectl reports one (cmdutil.UsageErrorf): `error: <message>` and the line
    saying where the help is, on stderr, exit code 1. click's own prints the usage text and `Error: ...`, and
    exits with 2."""

    exit_code = 1

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}\nSee '{self.command} -h' for help and examples", file=file, err=True)


def command_path(ctx: click.Context | None) -> str:
    """`kubectl clusternet get` for the context of `get`, whatever name the program was started by."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(str(ctx.info_name))
        ctx = ctx.parent
    return " ".join([PLUGIN_COMMAND, *reversed(names)])


@contextmanager
def kubectl_usage_errors(ctx: click.Context) -> Iterator[None]:
    """click's usage errors raised inside, as kubectl's (UsageError): the message in kubectl's manner (lower
    case, no full stop; an unknown option is kubectl's `unknown flag: --x`), and the help of the command that
    failed (when click does not say which, the sub-command being parsed, else `ctx`'s)."""
    try:
        yield
    except click.UsageError as exc:
        message = exc.format_message().removesuffix(".")
        if isinstance(exc, click.NoSuchOption):
            message = f"unknown flag: {exc.option_name}"  # kubectl's words (click's vary between versions)
        if exc.ctx is not None:
            path = command_path(exc.ctx)
        else:  # click's parser says no context; Group.invoke names the sub-command before parsing its arguments
            path = " ".join([command_path(ctx), *filter(None, [ctx.invoked_subcommand])])
        raise UsageError(message[:1].lower() + message[1:], path) from exc


class PluginGroup(click.Group):
    """The commands on the parent, plus the routing of a whole command line to a child cluster.

    A command line naming --cluster-id (or another child option) anywhere before `--` is not parsed here:
    every verb with every flag goes to the real kubectl, against the child, through the hub
    (`childcluster`). kubectl verbs we do not run on templates get a one-line error saying how to reach a
    child, or what to use for templates (`routing.CHILD_ONLY_VERBS`).

    Every usage error, of this group's options or of a sub-command's, passes through parse_args or invoke
    here, and leaves as kubectl's (`kubectl_usage_errors`); no arguments at all print the help on stdout
    with exit code 0, as kubectl does (click 8.2+ prints it on stderr with exit code 2)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from clusternet_kubectl.routing import wants_child

        if not ctx.resilient_parsing and wants_child(args):
            from clusternet_kubectl.childcluster import main as child_main

            ctx.exit(child_main(args))
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help())
            ctx.exit(0)
        with kubectl_usage_errors(ctx):
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        with kubectl_usage_errors(ctx):
            return super().invoke(ctx)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                           list[str]]:
        from clusternet_kubectl.routing import CHILD_ONLY_VERBS, child_only_message

        if args and args[0] in CHILD_ONLY_VERBS and args[0] not in self.commands:
            click.echo(f"error: {child_only_message(args[0])}", err=True)
            ctx.exit(1)
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            raise UsageError(f'unknown command "{args[0]}" for "{PLUGIN_COMMAND}"', PLUGIN_COMMAND)
        return super().resolve_command(ctx, args)


def child_options(f: F) -> F:
    """The options of `--cluster-id` routing, for --help: PluginGroup handles them before click parses."""
    f = click.option("--clusternet-as-uid", metavar="UID", expose_value=False,
                     help="[child] UID to impersonate in the child (with --clusternet-as).")(f)
    f = click.option("--clusternet-as-group", metavar="GROUP", multiple=True, expose_value=False,
                     help="[child] Group to impersonate in the child (with --clusternet-as); repeatable.")(f)
    f = click.option("--clusternet-as", metavar="USER", expose_value=False,
                     help="[child] User to impersonate in the child (the child's RBAC must let the token "
                          "impersonate).")(f)
    f = click.option("--child-kubeconfig", metavar="PATH", expose_value=False,
                     help="[child] Kubeconfig with the child's own token (its current context); required with "
                          "--cluster-id.")(f)
    f = click.option("--cluster-id", metavar="ID", expose_value=False,
                     help="[child] Run the rest of the command line (any kubectl command) in this child cluster "
                          "through the hub: its cluster id, ManagedCluster name or namespace/name.")(f)
    return f


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@connection_options
@child_options
def main() -> None:
    """Manage Clusternet feeds, subscriptions and overrides on the parent cluster, or, with --cluster-id ID
    --child-kubeconfig FILE, run any kubectl command in one child cluster through the hub."""


@main.command()
@click.option("-f", "--filename", "filenames", multiple=True,
              help="File, directory or - (stdin) with objects to apply; repeatable.")
@click.option("-R", "--recursive", is_flag=True, help="Walk directories given with -f recursively.")
@click.option("-k", "--kustomize", metavar="DIR",
              help="Apply what `kubectl kustomize DIR` builds (runs the real kubectl).")
@connection_options
def apply(filenames: tuple[str, ...], recursive: bool, kustomize: str | None) -> None:
    """Apply Clusternet objects as CRs and everything else as templates (Manifests)."""
    if bool(filenames) == bool(kustomize):
        message = "only one of -f or -k can be specified" if filenames else "must specify one of -f and -k"
        click.echo(f"error: {message}", err=True)
        sys.exit(1)
    documents = _kustomized(kustomize) if kustomize else _documents(filenames, recursive)
    if not documents:
        click.echo("error: no objects passed to apply", err=True)
        sys.exit(1)
    from clusternet_kubectl.commands.apply import apply_command

    _run(apply_command, documents)


@main.command()
@click.argument("kind")
@click.argument("names", nargs=-1)
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-l", "--selector", default="", metavar="SELECTOR",
              help="Label selector on the objects' own labels (templates: the template's labels), e.g. "
                   "app=web,tier!=db or 'env in (a,b)'.")
@click.option("-o", "--output", default=None, callback=_output_format, metavar="FORMAT",
              help="wide, yaml, json, name, jsonpath=TEMPLATE, jsonpath-file=FILE or custom-columns=SPEC "
                   "(kubectl's forms).")
@click.option("-w", "--watch", is_flag=True, help="After the list, print each change until interrupted.")
@connection_options
def get(kind: str, names: tuple[str, ...], all_namespaces: bool, selector: str, output: str | None,
        watch: bool) -> None:
    """List Clusternet objects (server columns), or the templates of any other kind (NAME, CREATED AT; -o wide adds
    the Manifest name)."""
    from clusternet_kubectl.commands.get import get_command

    _run(get_command, kind, names, all_namespaces, output, selector, watch, interrupted=0 if watch else 130)


@main.command()
@click.argument("kind")
@click.argument("names", nargs=-1)
@connection_options
def describe(kind: str, names: tuple[str, ...]) -> None:
    """Show templates with the clusters they are deployed to and how they are doing there, or Clusternet
    objects with their spec, status and events."""
    from clusternet_kubectl.commands.describe import describe_command

    _run(describe_command, kind, names)


@main.command()
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option("-f", "--filename", "filenames", multiple=True, help="Delete the objects in these files.")
@click.option("-R", "--recursive", is_flag=True, help="Walk directories given with -f recursively.")
@connection_options
def delete(kind: str | None, names: tuple[str, ...], filenames: tuple[str, ...], recursive: bool) -> None:
    """Delete Clusternet objects, or the templates of any other kind."""
    documents = _documents(filenames, recursive) if filenames else []
    from clusternet_kubectl.commands.delete import delete_command

    _run(delete_command, kind, names, documents)


@main.command()
@click.argument("subscription")
@click.option("--cluster", required=True, metavar="ID|NAMESPACE/NAME",
              help="The ManagedCluster: its cluster id, name, or namespace/name.")
@click.option("--allow-unbound", is_flag=True,
              help="Render for a cluster the Subscription does not bind too: what it would get if it did.")
@connection_options
def render(subscription: str, cluster: str, allow_unbound: bool) -> None:
    """Print the objects one cluster gets from a Subscription, after overrides, as YAML."""
    from clusternet_kubectl.commands.render import render_command

    _run(render_command, subscription, cluster, allow_unbound)


@main.command()
@click.argument("requests", nargs=-1, required=True, metavar="CRR|CLUSTER_ID|CLUSTER_NAME...")
@connection_options
def approve(requests: tuple[str, ...]) -> None:
    """Approve pending cluster registrations (hub started with --cluster-approval=Manual)."""
    from clusternet_kubectl.commands.approve import verdict_command

    _run(verdict_command, requests, "Approved", "")


@main.command()
@click.argument("requests", nargs=-1, required=True, metavar="CRR|CLUSTER_ID|CLUSTER_NAME...")
@click.option("--reason", default="", help="Why: shown to the cluster's agent in its error message.")
@connection_options
def deny(requests: tuple[str, ...], reason: str) -> None:
    """Deny cluster registrations (the agent stops with the reason; delete the request to let it retry)."""
    from clusternet_kubectl.commands.approve import verdict_command

    _run(verdict_command, requests, "Denied", reason)


@main.command()
def version() -> None:
    """Print the plugin version."""
    click.echo(f"kubectl-clusternet {__version__}")
