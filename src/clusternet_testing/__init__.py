"""Real control planes, the real binaries as processes, and kubectl helpers, for tests, bench/ and hack/.

A development extra: it is not in the wheel (pyproject excludes it) and nothing shipped may import it (an
import-linter contract in `make lint`). It finds the repository checkout it runs from for
hack/control-plane-binaries.sh and examples/.
"""
