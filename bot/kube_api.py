"""Raw JSON requests to the Kubernetes API through the official client's ApiClient.

The client's generated methods validate their arguments and build model objects both ways, which
costs more than the request itself; orbit sends its own manifests and reads only the fields it needs.
The ApiClient still brings the configuration (in-cluster or kubeconfig), authentication and TLS.
JSON requests go straight to its connection pool, serialised with orjson: its request building
(recursive sanitising of the body, `json.dumps`) cost a third of each request's CPU time.
Handlers on the event loop (a runner's pod, secret and class listing) use `aexpect`: the same
request on an aiohttp pool with the configuration's TLS and token, which spares a thread hop and
http.client's header parsing (0.50 ms -> about 0.15 ms of CPU time a pod create).
"""

import asyncio
import ssl
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError
from urllib3.util.retry import Retry
from urllib3.util.ssl_ import create_urllib3_context
from yarl import URL

from bot.aio_pool import LoopPool, LoopSessions
from bot.errors import PermanentError, TemporaryError

JSON = {"Accept": "application/json", "Content-Type": "application/json"}
# Only each object's metadata, as the API server sends it for this Accept header: a list of runner
# pods is then a few hundred bytes a pod instead of the whole spec and status.
METADATA_ONLY = {
    "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
}
# Every request gives up when connecting, or waiting for the next bytes of an answer, takes longer
# than this (seconds): a worker or the reconciler is never held by an API server that does not answer.
KUBE_TIMEOUT = (5.0, 30.0)
# urllib3 retries a failed connection (nothing was sent) but not a read that timed out or broke
# (the default retries those three times for a GET, which would make the timeout four times longer);
# a request that failed is retried by the inbox, with backoff.
RETRIES = Retry(total=3, read=0)
POOL_CONNECTIONS = 100  # aiohttp waits for a free one (urllib3's pool makes more than it keeps)
IN_CLUSTER_REFRESH = "InClusterConfigLoader."  # the in-cluster loader's token refresh, by its name


def load_configuration() -> client.Configuration:
    """Return the in-cluster configuration, else the kubeconfig's."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.Configuration.get_default_copy()


def translate(error: ApiException, action: str) -> Exception:
    """Return the temporary or permanent error of a failed API call."""
    status = int(error.status or 0)
    if status == 0 or status >= 500 or status == 429:
        return TemporaryError(f"Kubernetes answered {status or 'nothing'} to {action}")
    if status == 409:  # another writer changed the object meanwhile: try again later
        return TemporaryError(f"Kubernetes answered 409 (conflict) to {action}")
    return PermanentError(f"Kubernetes answered {status} to {action}: {error.reason}")


class KubeApi:
    """Requests with JSON bodies; the caller decides what each status means.

    `timeout`: (connect, read) seconds for every request.
    """

    def __init__(
        self, api: client.ApiClient | None = None, timeout: tuple[float, float] = KUBE_TIMEOUT
    ) -> None:
        self.api = api or client.ApiClient(load_configuration())
        self.timeout = timeout
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        self._pools = LoopSessions(self._new_session) if on_the_loop(self.api.configuration) else None
        if self.api.configuration.retries is None:  # the caller's own choice stands
            pools = self.api.rest_client.pool_manager
            pools.connection_pool_kw["retries"] = RETRIES
            pools.clear()  # pools made before take their settings when they are made again

    def request(self, method: str, path: str, action: str, **options: Any) -> tuple[int, bytes]:
        """Send one request; return its status and body. Only a failure to get an answer raises."""
        try:
            prepared = self.api.param_serialize(method, path, auth_settings=["BearerToken"], **options)
            response = self.api.call_api(*prepared, _request_timeout=self.timeout)
            response.read()  # the whole body, so that the connection goes back to the pool
        except ApiException as error:
            raise translate(error, action) from error
        except HTTPError as error:
            raise TemporaryError(f"cannot reach Kubernetes: {type(error).__name__}") from error
        return int(response.status), bytes(response.data)

    def json(
        self,
        method: str,
        path: str,
        action: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send a JSON request; return the status and the decoded answer (None when empty)."""
        try:
            response = self.api.rest_client.pool_manager.request(
                method,
                self._url(path, query),
                body=None if body is None else orjson.dumps(body),
                headers=self._headers(headers),
                timeout=self._timeout,
                redirect=False,  # an API server does not redirect: the body and token stay with it
            )
        except HTTPError as error:
            raise TemporaryError(f"cannot reach Kubernetes: {type(error).__name__}") from error
        return int(response.status), _decoded(int(response.status), response.data)

    async def ajson(
        self,
        method: str,
        path: str,
        action: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """`json` on this event loop's aiohttp pool: no thread, and aiohttp's C parser.

        A configuration it cannot reproduce (see `on_the_loop`) goes through `json`, in a thread.
        """
        if self._pools is None:
            return await asyncio.to_thread(self.json, method, path, action, body, query, headers)
        try:  # the session's TLS context is made by the loop's first request: a bad CA file fails here
            async with self._pools.session().request(
                method,
                URL(self._url(path, query), encoded=True),
                data=None if body is None else orjson.dumps(body),
                headers=self._headers(headers),
                server_hostname=self.api.configuration.tls_server_name or None,
                allow_redirects=False,  # an API server does not redirect: the token stays with it
            ) as response:
                status, data = response.status, await response.read()
        except (aiohttp.ClientError, OSError) as error:  # OSError: timeouts, TLS, unreadable files
            raise TemporaryError(f"cannot reach Kubernetes: {type(error).__name__}") from error
        return status, _decoded(status, data)

    async def warm(self) -> None:
        """Make this event loop's pool now, not on its first request: its TLS context takes tens of ms.

        Whatever fails here (a bad CA) fails that request too, and is reported there.
        """
        if self._pools is not None:
            self._pools.session()

    def _url(self, path: str, query: list[tuple[str, str]] | None) -> str:
        return str(self.api.configuration.host) + path + (f"?{urlencode(query)}" if query else "")

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        configuration = self.api.configuration
        return {**self.api.default_headers, **JSON, **(headers or {}), **_authorization(configuration)}

    def _new_session(self) -> aiohttp.ClientSession:
        connect, read = self.timeout
        return aiohttp.ClientSession(
            connector=LoopPool(ssl=tls_context(self.api.configuration), limit=POOL_CONNECTIONS),
            # `connect` bounds the wait for a free connection too: a stalled server does not queue
            # every other request behind its own read timeouts
            timeout=aiohttp.ClientTimeout(
                total=None, connect=connect + read, sock_connect=connect, sock_read=read
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # the configuration names the proxy, if any (then `json` is used)
        )

    def expect(self, method: str, path: str, action: str, *tolerated: int, **options: Any) -> Any:
        """Send a JSON request; return the answer, None for a `tolerated` status; raise for others."""
        status, answer = self.json(method, path, action, **options)
        return _answer(status, answer, action, tolerated)

    async def aexpect(self, method: str, path: str, action: str, *tolerated: int, **options: Any) -> Any:
        """`expect` on this event loop (see `ajson`)."""
        status, answer = await self.ajson(method, path, action, **options)
        return _answer(status, answer, action, tolerated)

    async def aclose(self) -> None:
        """Close this event loop's connections (before the loop ends: a CLI run, a test)."""
        if self._pools is not None:
            await self._pools.aclose()

    def __del__(self) -> None:
        # The sessions go with the client (a process's end, a test's cluster): not "unclosed" ones.
        if pools := getattr(self, "_pools", None):
            pools.detach_all()


def _answer(status: int, answer: Any, action: str, tolerated: tuple[int, ...]) -> Any:
    """Return the answer of a successful request, None for a tolerated status; raise for others."""
    if status < 300:
        return answer
    if status in tolerated:
        return None
    reason = answer.get("message", "") if isinstance(answer, dict) else ""
    raise translate(ApiException(status=status, reason=str(reason)[:200]), action)


def on_the_loop(configuration: client.Configuration) -> bool:
    """Return whether aiohttp can send the configuration's requests as the official client's pool would.

    Not with a proxy, socket options (or TCP keep-alive, which the client turns into some), or an
    `assert_hostname`; nor when refreshing the token may block: a kubeconfig's exec plugin or OIDC
    provider runs on the caller's thread, which must not be the event loop's. The in-cluster
    loader's refresh rereads the service account's token file, once a minute.
    """
    hook = configuration.refresh_api_key_hook
    return not (
        configuration.proxy
        or configuration.socket_options
        or getattr(configuration, "keep_alive", False)
        or configuration.assert_hostname is not None
        or (hook is not None and not getattr(hook, "__qualname__", "").startswith(IN_CLUSTER_REFRESH))
    )


def tls_context(configuration: client.Configuration) -> ssl.SSLContext:
    """Return the TLS context the official client's urllib3 pool would use, built by urllib3 itself.

    The CA file or data, else the system's; the client certificate; verification off only when
    `verify_ssl` is; a certificate's common name is never taken for its host name (urllib3's rule).
    The TLS server name goes with each request.
    """
    context = create_urllib3_context(
        cert_reqs=ssl.CERT_REQUIRED if configuration.verify_ssl else ssl.CERT_NONE
    )
    if configuration.ssl_ca_cert or configuration.ca_cert_data:
        context.load_verify_locations(configuration.ssl_ca_cert, None, configuration.ca_cert_data)
    else:
        context.load_default_certs()
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def _decoded(status: int, data: bytes) -> Any:
    """Return the answer's JSON (None when empty); None for an error's page that is not JSON (a proxy's)."""
    try:
        return orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        if status >= 300:
            return None  # the status says what happened
        raise TemporaryError(f"Kubernetes answered {status} with a body that is not JSON") from None


def _authorization(configuration: client.Configuration) -> dict[str, str]:
    """Return the bearer token header, refreshed as the configuration refreshes it (in-cluster: rotated)."""
    bearer = configuration.auth_settings().get("BearerToken")
    return {bearer["key"]: bearer["value"]} if bearer and bearer["value"] else {}
