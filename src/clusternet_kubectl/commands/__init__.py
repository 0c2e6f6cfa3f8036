"""The sub-commands, one module each; `clusternet_kubectl.cli` imports a module only when its command runs."""
