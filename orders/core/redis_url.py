"""The Redis URLs the processes read (REDIS_URL, CELERY_BROKER_URL, REGISTRY_REDIS_URL), parsed and checked.

One server, as redis-py and kombu read it::

    redis://[[user]:password@]host[:port][/db][?option=value...]
    rediss://...?ssl_cert_reqs=required[&ssl_ca_certs=/path/ca.pem]      (TLS)
    unix://[[user]:password@]/path/to/redis.sock[?db=N]

A Sentinel-managed primary, in the form kombu and Celery take for their broker (each Sentinel a
``sentinel://`` element, separated by ``;``), plus what they take as transport options, given in the
query so that one variable says everything and REDIS_URL and CELERY_BROKER_URL read alike::

    sentinel://[[user]:password@]host[:port][;sentinel://host[:port]...][/db]?master_name=NAME
        [&sentinel_password=...][&sentinel_username=...][&ssl_cert_reqs=required&ssl_ca_certs=...]

- ``user``/``password`` in the userinfo are the *data nodes'* (as in kombu's ``sentinel://:pw@``);
  ``sentinel_password`` (and ``sentinel_username``) are the Sentinels' own (kombu's
  ``sentinel_kwargs={"password": ...}``), since Sentinels usually have a password of their own.
- ``master_name`` is the name the Sentinels monitor (kombu's ``master_name`` transport option);
  two Redis primaries watched by the same Sentinels differ only in it.
- ``/db``, the userinfo and the query may sit on any element (kombu reads the first one's); given on
  several, they must agree. The port defaults to 26379.
- ``ssl_*`` options turn TLS on, to the data nodes and the Sentinels alike; as with ``rediss://``,
  ``ssl_cert_reqs`` must then say how certificates are checked.

A Redis Cluster (REDIS_URL only: the aggregate; orders/core/redis_cluster.py builds its client)::

    redis+cluster://[[user]:password@]host:port[,host:port...][?ssl_...]   (rediss+cluster:// for TLS)

Each node named is a seed: the client learns the rest from ``CLUSTER SLOTS``. A Cluster has only
database 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from redis.connection import parse_url

REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
SENTINEL_SCHEME = "sentinel"
CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
SENTINEL_PORT = 26379
REDIS_PORT = 6379
# What a sentinel:// URL's query may carry: ours, and the TLS options kombu itself reads from it.
SENTINEL_OPTIONS = frozenset({"master_name", "sentinel_password", "sentinel_username"})
TLS_OPTIONS = frozenset(
    {"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
)
SECRET_WORDS = ("password", "secret", "token")
MASK = "****"


@dataclass(frozen=True)
class ServerUrl:
    """One Redis server (redis://, rediss://, unix://): redis-py reads the URL as it is."""

    url: str


@dataclass(frozen=True)
class SentinelUrl:
    """A primary that Sentinels watch and fail over; clients ask them where it is."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: Mapping[str, str] = field(default_factory=dict)

    def with_db(self, db: int) -> SentinelUrl:
        return replace(self, db=db)

    def kombu_url(self, first_only: bool = False) -> str:
        """The URL kombu's Sentinel channel takes: every element complete (a failover switch of kombu's
        reads the next element alone), without the options kombu takes as transport options.

        ``first_only``: the first element alone (see orders/core/broker_connection.py).
        """
        sentinels = self.sentinels[:1] if first_only else self.sentinels
        return ";".join(
            _element(host, port, self.username, self.password, self.db, dict(self.tls))
            for host, port in sentinels
        )

    def to_url(self) -> str:
        """The URL this parses from, in full (every element complete, our options in the query)."""
        query = {**self.tls, "master_name": self.master_name}
        if self.sentinel_username:
            query["sentinel_username"] = self.sentinel_username
        if self.sentinel_password:
            query["sentinel_password"] = self.sentinel_password
        return ";".join(
            _element(host, port, self.username, self.password, self.db, query)
            for host, port in self.sentinels
        )

    def same_primary(self, other: SentinelUrl) -> bool:
        """Whether both name the same primary: the same master name on Sentinels they share."""
        return self.master_name == other.master_name and bool(set(self.sentinels) & set(other.sentinels))


@dataclass(frozen=True)
class ClusterUrl:
    """A Redis Cluster, by its seed nodes (the aggregate's only: not Celery's broker, not the registry)."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: Mapping[str, str] = field(default_factory=dict)


RedisUrl = ServerUrl | SentinelUrl | ClusterUrl


def parse_redis_url(value: str) -> RedisUrl:
    """Parse any of the forms above; ValueError says what is wrong (never echoing a password)."""
    scheme = urlsplit(value.split(";", 1)[0]).scheme
    if scheme == SENTINEL_SCHEME:
        return _parse_sentinel(value)
    if scheme in CLUSTER_SCHEMES:
        return _parse_cluster(value)
    if scheme not in REDIS_SCHEMES:
        raise ValueError(
            "must be a redis://, rediss://, unix:// or sentinel:// URL (README: Redis URLs)"
            + (f", not {scheme}://" if scheme else "")
        )
    check_tls(value)
    return ServerUrl(value)


def check_tls(value: str) -> None:
    """A TLS URL says how the server's certificate is checked.

    A bare rediss:// is not what it looks like: kombu's stock transport then skips the certificate
    check, and with worker/transport.py it speaks plain TCP. Celery's result backend refuses it.
    """
    for element in value.split(";"):
        parts = urlsplit(element)
        query = dict(parse_qsl(parts.query))
        tls = parts.scheme in {"rediss", "rediss+cluster"} or any(key in TLS_OPTIONS for key in query)
        if tls and "ssl_cert_reqs" not in query:
            raise ValueError(
                "a TLS Redis URL must say how to check the server's certificate: add "
                "?ssl_cert_reqs=required (and &ssl_ca_certs=/path/ca.pem for a private CA)"
            )


def _parse_sentinel(value: str) -> SentinelUrl:
    check_tls(value)
    elements = [urlsplit(element) for element in value.split(";")]
    if any(parts.scheme != SENTINEL_SCHEME for parts in elements):
        raise ValueError("every ;-separated element of a Sentinel URL must be sentinel://host:port")
    sentinels = tuple(_address(parts, SENTINEL_PORT) for parts in elements)
    query: dict[str, str] = {}
    for parts in elements:
        _merge(query, dict(parse_qsl(parts.query)), "query option")
    unknown = set(query) - SENTINEL_OPTIONS - TLS_OPTIONS
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(sorted(unknown))} in a Sentinel URL; it takes "
            f"{', '.join(sorted(SENTINEL_OPTIONS | TLS_OPTIONS))}"
        )
    if not query.get("master_name"):
        raise ValueError("a Sentinel URL must name the primary the Sentinels watch: add ?master_name=NAME")
    username = _one_of(elements, lambda p: p.username, "user name")
    password = _one_of(elements, lambda p: p.password, "password")
    return SentinelUrl(
        sentinels=sentinels,
        master_name=query["master_name"],
        db=_database(elements),
        username=unquote(username) if username else None,
        password=unquote(password) if password else None,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
        tls={k: v for k, v in query.items() if k in TLS_OPTIONS},
    )


def _parse_cluster(value: str) -> ClusterUrl:
    check_tls(value)
    parts = urlsplit(value)
    if parts.path not in {"", "/", "/0"}:
        raise ValueError("a Redis Cluster has only database 0: drop the /database from the URL")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = tuple(_address(urlsplit(f"//{host}"), REDIS_PORT, need_port=True) for host in hosts.split(","))
    user, _, password = userinfo.partition(":")
    query = dict(parse_qsl(parts.query))
    unknown = set(query) - TLS_OPTIONS
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} in a Cluster URL")
    return ClusterUrl(nodes, unquote(user) or None, unquote(password) or None, query)


def _address(parts: SplitResult, default_port: int, need_port: bool = False) -> tuple[str, int]:
    hostname = parts.hostname
    try:
        port = parts.port
    except ValueError:
        raise ValueError("a port must be a number from 1 to 65535") from None
    if not hostname:
        raise ValueError("every node of the URL needs a host (host:port)")
    if need_port and port is None:
        raise ValueError(f"every node of a Cluster URL needs its port (host:port), {hostname} has none")
    return hostname, port or default_port


def _database(elements: list[SplitResult]) -> int:
    paths = {p.path.strip("/") for p in elements} - {""}
    if len(paths) > 1:
        raise ValueError("the elements of the Sentinel URL name different databases")
    db = paths.pop() if paths else "0"
    if not db.isdigit():
        raise ValueError(f"the database must be a number, got {db!r}")
    return int(db)


def _one_of(elements: list[SplitResult], read: Callable[[SplitResult], str | None], what: str) -> str | None:
    given = {read(p) for p in elements} - {None, ""}
    if len(given) > 1:
        raise ValueError(f"the elements of the Sentinel URL give different {what}s")
    return given.pop() if given else None


def _merge(into: dict[str, str], more: Mapping[str, str], what: str) -> None:
    for key, value in more.items():
        if into.get(key, value) != value:
            raise ValueError(f"the elements of the Sentinel URL give {key} different values ({what})")
        into[key] = value


def _element(
    host: str, port: int, username: str | None, password: str | None, db: int, query: Mapping[str, str]
) -> str:
    userinfo = ""
    if username or password:
        userinfo = quote(username or "", safe="") + (f":{quote(password, safe='')}" if password else "") + "@"
    tail = f"?{urlencode(query)}" if query else ""
    return f"{SENTINEL_SCHEME}://{userinfo}{host}:{port}/{db}{tail}"


def with_database(url: str, database: int) -> str:
    """The same Redis server, another database: ``redis://h:6379/0`` -> ``redis://h:6379/2``.

    A unix socket URL names its database in the query (``?db=N``); a Sentinel URL on every element.
    """
    parsed = parse_redis_url(url)
    if isinstance(parsed, SentinelUrl):
        return parsed.with_db(database).to_url()
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(database))]
        return f"{url.partition('?')[0]}?{urlencode(query)}"
    return urlunsplit(parts._replace(path=f"/{database}"))


def same_database(first: str, second: str) -> bool:
    """Whether two Redis URLs name the same database of the same server (as redis-py reads them), or of
    the same Sentinel-managed primary; False when either is not a Redis URL."""
    try:
        one, other = parse_redis_url(first), parse_redis_url(second)
    except ValueError:
        return False
    if isinstance(one, SentinelUrl) and isinstance(other, SentinelUrl):
        return one.same_primary(other) and one.db == other.db
    if not (isinstance(one, ServerUrl) and isinstance(other, ServerUrl)):
        return False

    def place(url: str) -> tuple[object, ...]:
        kwargs = parse_url(url)
        host = kwargs.get("host", "localhost")
        host = "localhost" if host in {"127.0.0.1", "::1", "localhost"} else host
        return (kwargs.get("path"), host, int(kwargs.get("port", 6379)), int(kwargs.get("db", 0)))

    return place(first) == place(second)


def redact(url: str) -> str:
    """Any of the URLs above (or another one) safe to log: passwords in userinfo and query masked.

    ``sentinel://:pw@h:26379;sentinel://h2:26379/0?master_name=m&sentinel_password=s`` ->
    ``sentinel://:****@h:26379;sentinel://h2:26379/0?master_name=m&sentinel_password=****``.
    """
    return ";".join(_redact_one(element) for element in url.split(";"))


def _redact_one(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hosts}" if has_password else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, MASK if any(word in k.lower() for word in SECRET_WORDS) else v) for k, v in pairs]
        query = urlencode(masked, safe="*/")
    return parts._replace(netloc=netloc, query=query).geturl()
