"""A pipelined Redis connection for hot paths (token-api's sessions, the dispatcher's steps).

redis-py's asyncio client spends ~50 µs of Python per command (pool checkout, stream writer,
parser and timeout plumbing), which is a fifth of the session budget. Here every caller
writes its command on one shared connection at once and awaits a future; replies come back
in order and a hiredis reader hands each to the oldest waiting caller. Commands queued in the
same event-loop iteration leave in one write. Redis executes commands one at a time anyway,
so a single pipelined connection loses nothing.

It offers the few commands those paths use, with redis-py's signatures and reply types
(``register_script`` → EVALSHA with a SCRIPT LOAD on NOSCRIPT; ``hgetall``, ``get``, ``set``,
``zadd``…; a non-transactional ``pipeline``), so the classes built on a redis-py client take
it as it is. Never a blocking command (XREAD BLOCK, BLPOP): it would hold up every command
behind it. Errors are redis-py's exception classes, so callers treat them alike: a lost or
timed-out connection fails every waiting command with ``ConnectionError``/``TimeoutError``
and the next command reconnects. Plain ``redis://`` only: :func:`hot_client` gives the
redis-py client for other URLs (TLS).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Connection(asyncio.Protocol):
    """One socket and the callers waiting on it, in the order their commands were written.

    One watchdog per connection bounds the wait for replies (a timer per command cost about
    as much as the rest of the command): when the oldest waiting command is older than the
    timeout, every waiting command fails and the socket closes. It looks every quarter of
    the timeout, so a command fails between 1 and 1.25 timeouts after it was sent."""

    def __init__(self, timeout: float = 2.0) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", replyError=ResponseError)
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.sent_at: deque[float] = deque()  # monotonic time of each pending command
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.outgoing: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None

    def send(self, command: bytes) -> asyncio.Future[Any]:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(waiter)
        self.sent_at.append(time.monotonic())
        self.queue(command)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(
                self.timeout / 4, self._check_overdue
            )
        return waiter

    def _check_overdue(self) -> None:
        self._watchdog = None
        if not self.sent_at:
            return
        if time.monotonic() - self.sent_at[0] >= self.timeout:
            # Later replies would be matched to the wrong callers: drop the connection.
            self.close(RedisTimeoutError(f"Redis did not answer within {self.timeout} s"))
            return
        self._watchdog = asyncio.get_running_loop().call_later(
            self.timeout / 4, self._check_overdue
        )

    def queue(self, command: bytes) -> None:
        """Write at the end of this loop iteration: the commands of every request handled in
        it leave in one system call (they cost more than the packing on this kind of host)."""
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self.flush)
        self.outgoing.append(command)

    def flush(self) -> None:
        chunks, self.outgoing = self.outgoing, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(chunks))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.pending:  # a reply nobody waits for: the stream is out of step
                self.close(RedisConnectionError("unexpected reply from Redis"))
                return
            waiter = self.pending.popleft()
            self.sent_at.popleft()
            if waiter.done():  # its caller went away; the reply still had to be consumed
                continue
            if isinstance(reply, ResponseError):
                waiter.set_exception(_error(reply))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def close(self, error: Exception) -> None:
        """Fail every command still waiting for its reply and close the socket."""
        waiting, self.pending = self.pending, deque()
        self.sent_at.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for waiter in waiting:
            if not waiter.done():
                waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()


def _error(reply: ResponseError) -> ResponseError:
    text = str(reply)
    return NoScriptError(text) if text.startswith("NOSCRIPT") else reply


class MuxScript:
    """A Lua script called by EVALSHA, loaded once when Redis does not know it."""

    def __init__(self, mux: MuxRedis, script: str) -> None:
        self.mux = mux
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()

    async def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Sequence[Any] | None = None,
        client: MuxPipeline | None = None,
    ) -> Any:
        keys, args = keys or (), args or ()
        if client is not None:  # queued; the pipeline loads it if Redis does not know it
            client.queue_script(self, keys, args)
            return client
        try:
            return await self.mux.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.sha = await self.mux.execute("SCRIPT", "LOAD", self.script)
            return await self.mux.execute("EVALSHA", self.sha, len(keys), *keys, *args)


class MuxRedis:
    def __init__(self, url: str, timeout: float = 2.0, connect_timeout: float = 2.0) -> None:
        if not url.startswith("redis://"):
            raise ValueError("MuxRedis speaks plain redis:// only")
        options = parse_url(url)
        self.host = str(options.get("host", "127.0.0.1"))
        self.port = int(options.get("port", 6379))
        self.db = int(options.get("db", 0))
        self.username = options.get("username")
        self.password = options.get("password")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()

    def register_script(self, script: str) -> MuxScript:
        return MuxScript(self, script)

    # -- the redis-py commands hot paths use, with its reply types --------------------------
    async def hgetall(self, name: str) -> dict[str, str]:
        return _as_dict(await self.execute("HGETALL", name))

    async def get(self, name: str) -> str | None:
        return cast(str | None, await self.execute("GET", name))

    async def set(
        self,
        name: str,
        value: Any,
        ex: int | None = None,
        px: int | None = None,
        nx: bool = False,
    ) -> bool | None:
        return _ok(await self.execute(*_set_args(name, value, ex, px, nx)))

    async def zadd(self, name: str, mapping: dict[str, Any], nx: bool = False) -> int:
        return int(await self.execute(*_zadd_args(name, mapping, nx)))

    async def zrem(self, name: str, *values: Any) -> int:
        return int(await self.execute("ZREM", name, *values))

    async def zscore(self, name: str, value: Any) -> float | None:
        score = await self.execute("ZSCORE", name, value)
        return None if score is None else float(score)

    async def pttl(self, name: str) -> int:
        return int(await self.execute("PTTL", name))

    def pipeline(self, transaction: bool = False) -> MuxPipeline:
        if transaction:
            raise ValueError("MuxRedis pipelines are not transactions (use a Lua script)")
        return MuxPipeline(self)

    async def execute(self, *args: Any) -> Any:
        connection = await self.connection()
        return await self._send(connection, args)

    async def connection(self) -> _Connection:
        connection = self._connection
        if connection is None or not connection.usable:
            connection = await self._connect()
        return connection

    async def _send(self, connection: _Connection, args: tuple[Any, ...]) -> Any:
        assert connection.transport is not None
        return await connection.send(hiredis.pack_command(args))

    async def _connect(self) -> _Connection:
        async with self._connecting:
            if self._connection is not None and self._connection.usable:
                return self._connection
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.connect_timeout):
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self.timeout), self.host, self.port
                    )
            except (OSError, TimeoutError) as error:
                raise RedisConnectionError(
                    f"cannot connect to Redis at {self.host}:{self.port}: {error}"
                ) from error
            if self.password:
                auth = (self.username, self.password) if self.username else (self.password,)
                await self._send(connection, ("AUTH", *auth))
            if self.db:
                await self._send(connection, ("SELECT", self.db))
            self._connection = connection
            return connection

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close(RedisConnectionError("client closed"))
            self._connection = None


class MuxPipeline:
    """Commands queued, then sent together: the replies in order, redis-py's types. Not a
    transaction (as redis-py's ``transaction=False``): each command runs on its own."""

    def __init__(self, mux: MuxRedis) -> None:
        self.mux = mux
        # (command arguments, reply conversion, the script when it is an EVALSHA)
        self._queued: list[tuple[tuple[Any, ...], Any, MuxScript | None]] = []

    async def __aenter__(self) -> MuxPipeline:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._queued.clear()

    def _queue(self, args: tuple[Any, ...], convert: Any = None) -> MuxPipeline:
        self._queued.append((args, convert, None))
        return self

    def queue_script(self, script: MuxScript, keys: Sequence[Any], args: Sequence[Any]) -> None:
        self._queued.append((("EVALSHA", script.sha, len(keys), *keys, *args), None, script))

    def hgetall(self, name: str) -> MuxPipeline:
        return self._queue(("HGETALL", name), _as_dict)

    def get(self, name: str) -> MuxPipeline:
        return self._queue(("GET", name))

    def set(
        self,
        name: str,
        value: Any,
        ex: int | None = None,
        px: int | None = None,
        nx: bool = False,
    ) -> MuxPipeline:
        return self._queue(_set_args(name, value, ex, px, nx), _ok)

    def zadd(self, name: str, mapping: dict[str, Any], nx: bool = False) -> MuxPipeline:
        return self._queue(_zadd_args(name, mapping, nx), int)

    def xack(self, name: str, group: str, *ids: Any) -> MuxPipeline:
        return self._queue(("XACK", name, group, *ids), int)

    async def execute(self) -> list[Any]:
        queued, self._queued = self._queued, []
        if not queued:
            return []
        connection = await self.mux.connection()
        # Futures, not tasks: every command leaves in this loop iteration's one write.
        replies = await asyncio.gather(
            *(connection.send(hiredis.pack_command(args)) for args, _, _ in queued),
            return_exceptions=True,
        )
        out: list[Any] = []
        for (args, convert, script), reply in zip(queued, replies, strict=True):
            if isinstance(reply, NoScriptError) and script is not None:
                reply = await script(keys=args[3 : 3 + args[2]], args=args[3 + args[2] :])
            if isinstance(reply, BaseException):
                raise reply  # as redis-py: the first error, after every command ran
            out.append(convert(reply) if convert is not None else reply)
        return out


def _as_dict(reply: Any) -> dict[str, str]:
    items = reply or []
    return dict(zip(items[::2], items[1::2], strict=True))


def _ok(reply: Any) -> bool | None:
    return True if reply == "OK" else None


def _set_args(name: str, value: Any, ex: int | None, px: int | None, nx: bool) -> tuple[Any, ...]:
    args: list[Any] = ["SET", name, value]
    if ex is not None:
        args += ["EX", ex]
    if px is not None:
        args += ["PX", px]
    if nx:
        args.append("NX")
    return tuple(args)


def _zadd_args(name: str, mapping: dict[str, Any], nx: bool) -> tuple[Any, ...]:
    args: list[Any] = ["ZADD", name]
    if nx:
        args.append("NX")
    for member, score in mapping.items():
        args += [score, member]
    return tuple(args)


def hot_client(url: str, fallback: Redis, timeout: float = 2.0) -> Redis:
    """A pipelined connection for ``redis://`` URLs; else (TLS) the redis-py ``fallback``.
    Typed as redis-py's client: the commands above have its signatures and replies."""
    if not url.startswith("redis://"):
        return fallback
    return cast(Redis, MuxRedis(url, timeout=timeout))
