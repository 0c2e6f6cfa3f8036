"""`kubectl clusternet`: placeholder until feeds can be applied as templates (deployment issue)."""

import click

from clusternet_api import __version__


@click.group()
def main() -> None:
    """Manage Clusternet feeds and clusters from kubectl."""


@main.command()
def version() -> None:
    """Print the plugin version."""
    click.echo(f"kubectl-clusternet {__version__}")
