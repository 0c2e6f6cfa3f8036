"""`python -m clusternet_kubectl`: the same CLI as the `kubectl-clusternet` console script."""

from clusternet_kubectl.cli import main

if __name__ == "__main__":
    main(prog_name="kubectl-clusternet")
