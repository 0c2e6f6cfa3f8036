"""The deployer's credentials: the child's token the pullers apply with, and the hub's push credentials the agent
publishes on the parent (AppPusher), each renewed every DEPLOYER_REFRESH_SECONDS and retried when it fails."""

from __future__ import annotations

import asyncio
import logging
import time

from clusternet_api.backoff import Backoff
from clusternet_api.kube import Credentials, Kube
from clusternet_api.logs import error_text

log = logging.getLogger("clusternet_agent.deployercreds")

# The child's deployer token is asked for this long (TokenRequest) and renewed after a third of it: a refresh
# that fails leaves 40 minutes of retries before the pullers' token expires.
DEPLOYER_TOKEN_SECONDS = 3600
DEPLOYER_REFRESH_SECONDS = 1200.0
# Retries of a failed deployer token request, and of a failed publication of the hub's push credentials: soon after
# an API server's blip, then at most once a minute.
DEPLOYER_RETRY_FIRST_SECONDS = 2.0
DEPLOYER_RETRY_MAX_SECONDS = 60.0


async def publish_until(refresh_at: float, parent: Kube, namespace: str, creds: Credentials, apiserver_url: str,
                        allow: bool) -> None:
    """Publish (or, without AppPusher, withdraw) the hub's push credentials, then wait until `refresh_at`
    (time.monotonic()). A publication the parent failed is retried, DEPLOYER_RETRY_FIRST_SECONDS doubling to
    DEPLOYER_RETRY_MAX_SECONDS, until it lands; a retry that would come as late as the refresh is left to the
    refresh, which publishes anyway (cut short to the refresh's time, it made a second attempt right behind the
    first when the pause ran out a hair before it). It was tried again only at the next refresh, 20 minutes on:
    at 1,000 clusters registering at once the parent's quota admission timed out for 47 agents (HTTP 500), and the
    hub could push nothing to those clusters all that time (bench/scale.py, 2026-12-07)."""
    from clusternet_agent import puller

    backoff = Backoff(DEPLOYER_RETRY_FIRST_SECONDS, DEPLOYER_RETRY_MAX_SECONDS)
    while True:
        try:
            await puller.publish_push_credentials(parent, namespace, creds, apiserver_url, allow)
        except Exception as e:
            pause, left = backoff.next(), refresh_at - time.monotonic()
            if pause < left:
                log.warning("publishing push credentials failed: %s (retrying in %.0fs)", error_text(e), pause)
                await asyncio.sleep(pause)
                continue
            log.warning("publishing push credentials failed: %s (trying again at the refresh, in %.0fs)",
                        error_text(e), max(left, 0))
        await asyncio.sleep(max(refresh_at - time.monotonic(), 0))
        return


async def retrying(child: Kube, namespace: str, doing: str) -> Credentials:
    """The deployer's credentials (puller.deployer_credentials), asked for again until the child answers.

    puller.deployer_credentials falls back to the agent's own identity on an HTTP error, but a child API server
    that is restarting (connection refused) or frozen (a timeout) raises: that ended `deploying`, and both
    pullers with it. A refresh that fails is only retried, here, while the pullers go on with the token they
    have (valid for DEPLOYER_TOKEN_SECONDS); the first request is retried the same way. Each failure is one
    line, without the token."""
    from clusternet_agent import puller

    backoff = Backoff(DEPLOYER_RETRY_FIRST_SECONDS, DEPLOYER_RETRY_MAX_SECONDS)
    while True:
        try:
            return await puller.deployer_credentials(child, namespace, DEPLOYER_TOKEN_SECONDS)
        except Exception as e:
            pause = backoff.next()
            log.warning("%s the %s token from the child failed: %s (retrying in %.0fs)", doing,
                        puller.DEPLOYER_SA, error_text(e), pause)
        await asyncio.sleep(pause)
