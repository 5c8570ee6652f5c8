"""The delivery engine of tenants' webhooks, in the worker process: one asyncio loop that claims
due deliveries from the store and sends them with aiohttp, many at once.

- **Fair by construction.** The store hands out due deliveries one per tenant in turn (the
  tenant served longest ago first), one per endpoint in turn within a tenant, at most
  TENANT_WEBHOOK_ENDPOINT_CONCURRENCY leases per endpoint (one, at its probe time, while the
  endpoint keeps failing; none while it is disabled). However much one tenant has queued, a
  tenant with work due gets the next free place.
- **No thread per attempt.** An attempt waiting on the network is a coroutine: at most
  TENANT_WEBHOOK_IN_FLIGHT of them per worker, however slow the endpoints. The store is called
  from one thread beside the loop (claims and outcomes in batches), so the loop never waits on it.
- **One wake-up per due time.** With nothing due, the loop sleeps (`IDLE_S`, or until an attempt
  ends); a delivery is claimed only when due, and a lease that runs out (a worker killed
  mid-attempt) puts it back once (`reap`). An idle worker uses no CPU while endpoints hang.
- **Never stuck.** Whatever goes wrong in an attempt (a URL refused by the guard, a secret no
  key opens, any exception) is recorded as that attempt's error, retried with back-off or failed.
- **Suspended tenants.** `paused(tenant) -> bool` (default: never) keeps a tenant's deliveries
  waiting, untried, as long as it holds.
- **The guard holds**: `AsyncSender` checks the URL and the addresses its host resolves to at
  every attempt and connects only to the addresses it checked (`GuardedResolver`), follows no
  redirect, reads at most 64 KiB of an answer, and bounds the whole exchange by the timeout.
"""

import asyncio
import logging
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..egress import (
    MAX_ANSWER_BYTES,
    USER_AGENT,
    Answer,
    Resolver,
    UrlRefused,
    check_url_form,
    checked_addresses,
    resolve,
)
from ..storage import Claim, Outcome
from ..webhooks import TenantWebhooks, sign

log = logging.getLogger("tokensvc.worker")

#: Deliveries claimed in one call at most.
CLAIM_BATCH = 200
#: How long the loop sleeps with nothing to do, seconds (a new delivery waits at most this).
IDLE_S = 0.1
#: After an attempt ends, how long the loop waits for others to end too (one store call for
#: them all), seconds.
GATHER_S = 0.002
#: How often expired leases are put back, seconds.
REAP_S = 2.0
REAP_BATCH = 500
#: After the store failed, how long before trying again, seconds.
STORE_RETRY_S = 1.0


class GuardRefused(OSError):
    """The guard refused the addresses of a host (raised inside aiohttp's connector)."""


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for tenants' URLs: the addresses the guard allows, nothing else, so a
    connection goes only to an address checked when it was opened."""

    def __init__(self, allow_private: bool, resolver: Resolver = resolve):
        """Check with `allow_private` as TENANT_WEBHOOKS_ALLOW_PRIVATE; resolve with
        `resolver`."""
        self.allow_private = allow_private
        self.resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The checked addresses of `host`; GuardRefused when the guard refuses them."""
        try:
            addresses = await checked(host, port, self.allow_private, self.resolver)
        except UrlRefused as exc:
            raise GuardRefused(str(exc)) from None
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        """Nothing to close."""


async def checked(host: str, port: int, allow_private: bool, resolver: Resolver) -> list[str]:
    """The guard's addresses for `host` (a literal address at once, a name in a thread)."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return checked_addresses(host, port, allow_private, resolver)
    except OSError:
        pass
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, checked_addresses, host, port, allow_private, resolver)


class AsyncSender:
    """POSTs to tenants' URLs through the guard, asynchronously, on kept-alive connections to
    checked addresses."""

    def __init__(self, timeout: float, allow_private: bool, limit: int, resolver: Resolver):
        """Bound every exchange by `timeout` seconds and the connections by `limit`."""
        self.timeout = timeout
        self.allow_private = allow_private
        self.resolver = resolver
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=limit,
                use_dns_cache=False,
                resolver=GuardedResolver(allow_private, resolver),
                ssl=ssl.create_default_context(),
            ),
            timeout=aiohttp.ClientTimeout(total=timeout),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        )

    async def post(self, url: str, body: bytes, headers: dict) -> Answer:
        """POST `body` to `url` once: checked, sent, the status and at most MAX_ANSWER_BYTES
        read, all within the timeout."""
        try:
            _, host, port, _ = check_url_form(url, self.allow_private)
            await checked(host, port, self.allow_private, self.resolver)
        except UrlRefused as exc:
            return Answer(None, f"refused: the URL {exc}")
        try:
            async with self.session.post(
                URL(url, encoded=True),
                data=body,
                headers={
                    "User-Agent": USER_AGENT,
                    "Content-Type": "application/json",
                    **headers,
                },
                allow_redirects=False,
            ) as response:
                read = 0
                while read < MAX_ANSWER_BYTES:
                    chunk = await response.content.read(MAX_ANSWER_BYTES - read)
                    if not chunk:
                        break
                    read += len(chunk)
                if not response.content.at_eof():
                    response.close()  # the rest is left unread: the connection is not reused
                status = response.status
        except TimeoutError:
            return Answer(None, f"timed out after {self.timeout:g} s")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, GuardRefused):
                return Answer(None, f"refused: the URL {exc.os_error}")
            if isinstance(exc.os_error, ConnectionRefusedError):
                return Answer(None, "connection refused")
            if isinstance(exc, aiohttp.ClientSSLError):
                return Answer(None, "TLS failed")
            return Answer(None, f"failed ({type(exc.os_error).__name__})")
        except aiohttp.ClientSSLError:
            return Answer(None, "TLS failed")
        except (aiohttp.ClientError, OSError) as exc:
            return Answer(None, f"failed ({type(exc).__name__})")
        if 200 <= status < 300:
            return Answer(status)
        if 300 <= status < 400:
            return Answer(status, f"answered {status} (redirects are not followed)")
        return Answer(status, f"answered {status}")

    async def close(self) -> None:
        """Close the connections."""
        await self.session.close()


def never_paused(tenant: str) -> bool:
    """The default: no tenant's deliveries are held."""
    return False


class DeliveryEngine:
    """Claims, sends and records tenants' webhook deliveries until stopped."""

    def __init__(
        self,
        webhooks: TenantWebhooks,
        paused: Callable[[str], bool] = never_paused,
        in_flight: int | None = None,
    ):
        """Deliver for `webhooks`, at most `in_flight` attempts at once (default
        TENANT_WEBHOOK_IN_FLIGHT), holding the deliveries of tenants `paused` names."""
        settings = webhooks.settings
        self.webhooks = webhooks
        self.store = webhooks.store
        self.paused = paused
        self.in_flight = in_flight or settings.tenant_webhook_in_flight
        self.timeout = settings.tenant_webhook_timeout
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake: asyncio.Event | None = None
        self.running: set[asyncio.Task] = set()
        self.outcomes: list[Outcome] = []
        self.held: set[str] = set()
        self.tenants: dict[str, str] = {}  # each claimed delivery's tenant, till recorded
        self.storage = ThreadPoolExecutor(1, thread_name_prefix="webhook-store")

    # Running it.

    def start(self) -> "DeliveryEngine":
        """Run in a background thread (tests, an embedding host); `stop` ends it."""
        self.thread = threading.Thread(target=self.run, name="webhook-engine", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop claiming, let the attempts under way end (within the timeout), record them."""
        self.stopping.set()
        if self.loop is not None and self.wake is not None:
            try:
                self.loop.call_soon_threadsafe(self.wake.set)
            except RuntimeError:  # the loop has ended already
                pass
        if self.thread is not None:
            self.thread.join(self.timeout + 5)

    def run(self, signals: bool = False) -> None:
        """Run in this thread until `stop` (or, with `signals`, SIGTERM or SIGINT)."""
        asyncio.run(self._main(signals))

    async def _main(self, signals: bool) -> None:
        """The loop: record outcomes, put back expired leases, claim, sleep."""
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        if signals:
            for number in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(number, self._stop_now)
        sender = AsyncSender(
            self.timeout,
            self.webhooks.settings.tenant_webhooks_allow_private,
            self.in_flight,
            self.webhooks.sender.resolver,
        )
        self.sender = sender
        reaped_at = 0.0
        try:
            while not self.stopping.is_set():
                if not await self._record():
                    await asyncio.sleep(STORE_RETRY_S)
                    continue
                if time.monotonic() - reaped_at >= REAP_S:
                    await self._call(
                        self.store.reap, REAP_BATCH, self.webhooks.concurrency, quiet=True
                    )
                    reaped_at = time.monotonic()
                claimed = await self._claim()
                if claimed is None:
                    await asyncio.sleep(STORE_RETRY_S)
                    continue
                if claimed == CLAIM_BATCH and len(self.running) < self.in_flight:
                    continue  # more may be due at once
                self.wake.clear()
                if self.outcomes:
                    continue
                try:
                    await asyncio.wait_for(self.wake.wait(), IDLE_S)
                    await asyncio.sleep(GATHER_S)
                except TimeoutError:
                    pass
            if self.running:
                await asyncio.wait(list(self.running), timeout=self.timeout + 1)
            await self._record()
        finally:
            await sender.close()
            self.storage.shutdown(wait=True)

    def _stop_now(self) -> None:
        """Stop claiming (a signal, in the loop)."""
        self.stopping.set()
        if self.wake is not None:
            self.wake.set()

    async def _call(self, function, *args, quiet: bool = False):
        """`function(*args)` in the store's thread; None (logged) when the store failed."""
        assert self.loop is not None
        try:
            return await self.loop.run_in_executor(self.storage, function, *args)
        except Exception as exc:  # sqlite3, redis-py or the observed wrapper's 503 alike
            if not quiet:
                log.warning("webhook engine: the storage failed (%s)", type(exc).__name__)
            return None

    async def _claim(self) -> int | None:
        """Claim what is due, as far as there is room, and start an attempt for each (those of
        paused tenants released at once); how many were claimed, None when the store failed."""
        room = self.in_flight - len(self.running)
        if room <= 0:
            return 0
        self.held = {tenant for tenant in self.held if self._paused(tenant)}
        batch = min(room, CLAIM_BATCH)
        claims = await self._call(
            self.store.claim,
            batch,
            self.webhooks.lease_ms,
            self.webhooks.concurrency,
            sorted(self.held),
        )
        if claims is None:
            return None
        for claim in claims:
            if self._paused(claim.tenant):
                self.held.add(claim.tenant)
                self.outcomes.append(Outcome(claim.id, claim.endpoint_id, "released"))
                continue
            self.tenants[claim.id] = claim.tenant
            task = asyncio.create_task(self._attempt(claim))
            self.running.add(task)
            task.add_done_callback(self.running.discard)
        return len(claims)

    def _paused(self, tenant: str) -> bool:
        """Whether `tenant`'s deliveries wait (a predicate that fails holds them: fail closed)."""
        try:
            return bool(self.paused(tenant))
        except Exception as exc:
            log.warning("webhook engine: the paused check failed (%s)", type(exc).__name__)
            return True

    async def _attempt(self, claim: Claim) -> None:
        """One attempt of a claimed delivery; its outcome is recorded with the next batch."""
        try:
            headers = sign(
                claim.id, int(time.time()), claim.body, self.webhooks.signing_secrets(claim)
            )
            answer = await self.sender.post(claim.url, claim.body.encode(), headers)
        except Exception as exc:  # never leave a delivery without its attempt recorded
            answer = Answer(None, f"failed ({type(exc).__name__})")
        delay = self.webhooks.backoff(max(claim.attempts, claim.endpoint_failures))
        self.outcomes.append(
            Outcome(
                claim.id,
                claim.endpoint_id,
                "delivered" if answer.ok else "failed",
                answer.status,
                answer.error or "",
                int(delay * 1000),
            )
        )
        if self.wake is not None:
            self.wake.set()

    async def _record(self) -> bool:
        """Record the outcomes gathered (one store call), tell the observer, and send the
        `endpoint.disabled` events they caused; whether the store answered."""
        if not self.outcomes:
            return True
        outcomes, self.outcomes = self.outcomes, []
        webhooks = self.webhooks
        finished = await self._call(
            self.store.finish,
            outcomes,
            webhooks.concurrency,
            webhooks.disable_after_ms,
            webhooks.disabled_reason(),
        )
        if finished is None:
            self.outcomes = outcomes + self.outcomes  # kept for the next try
            return False
        by_id = {outcome.id: outcome for outcome in outcomes}
        for done in finished:
            outcome = by_id[done.id]
            tenant = self.tenants.pop(done.id, "")
            if outcome.kind == "released":
                continue
            webhooks.observed("retried" if done.status == "pending" else done.status)
            if done.disabled and tenant:
                sent = await self._call(webhooks.endpoint_disabled, tenant, outcome.endpoint_id)
                log.warning(
                    "webhook endpoint disabled: %s; %s other endpoints of its tenant told",
                    webhooks.disabled_reason(),
                    sent,
                )
        return True
