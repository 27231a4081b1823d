"""Fetching and parsing the agency list: real HTTP on 127.0.0.1, real files."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import threading
from pathlib import Path

import pytest

from bot.config import FORMATS as CONFIG_FORMATS
from bot.config import Duration, SourceConfig
from bot.source import Fetched, FetchError, ParseError, ScanMismatch, Validators, fetch, parse
from bot.source.formats import FORMATS, infer_format
from bot.source.formats.kml import parse_kml, placemark_digests
from bot.source.guard import check_follow
from tests.support.agencies import agencies
from tests.support.bot import Bot
from tests.support.cli import run_cli
from tests.support.http import closed_port_url
from tests.support.source_server import Reply, SourceServer
from tests.support.synthetic import networklink_kml, to_kml
from tests.support.wait import wait_for


def source(url: str, **overrides) -> SourceConfig:
    fast = {"timeout": Duration(1), "retries": 1, "backoff": Duration(0.05)}
    return SourceConfig(url=url, **{**fast, **overrides})


def records(config: SourceConfig) -> list[dict[str, str]]:
    fetched = fetch(config)
    return [fields for _, fields in parse(fetched, config)]


def names(bot: Bot) -> set[str]:
    return {row["name"] for row in bot.agencies().values()}


# --- KML shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["folder", "flat"])
@pytest.mark.parametrize("one_line", [True, False])
def test_placemarks_are_found_in_both_folder_layouts(source_server, layout, one_line):
    items = agencies(5)
    url = source_server.serve("/map.kml", to_kml(items, layout=layout, one_line=one_line))

    parsed = records(source(url))

    assert [r["name"] for r in parsed] == [a.name for a in items]
    assert parsed[0]["Active Date"] == items[0].active_date
    assert parsed[0]["Agency Profile"] == items[0].profile_url
    assert parsed[0]["address"] == f"{items[0].city}, {items[0].state}"


def test_unknown_placemark_fields_are_kept(tmp_path, source_server):
    body = to_kml(agencies(1)).replace(
        b"</ExtendedData>", b'<Data name="Liaison"><value>Sgt. Pepper</value></Data></ExtendedData>'
    )
    bot = Bot.create(tmp_path, source_server.serve("/map.kml", body))

    bot.poll()

    (row,) = bot.agencies().values()
    assert json.loads(row["extra"]) == {"Liaison": "Sgt. Pepper"}


def test_a_network_link_is_followed(tmp_path, source_server):
    items = agencies(6)
    source_server.serve("/map.kml", to_kml(items))
    link = source_server.serve("/kml", networklink_kml(source_server.url("/map.kml")))
    bot = Bot.create(tmp_path, link)

    bot.poll()

    assert [r["path"] for r in source_server.requests] == ["/kml", "/map.kml"]
    assert names(bot) == {a.name for a in items}
    assert bot.polls()[0]["url"] == source_server.url("/map.kml")


def test_a_relative_network_link_is_resolved_against_the_link_url(source_server):
    source_server.serve("/maps/doc.kml", to_kml(agencies(2)))
    link = source_server.serve("/maps/link.kml", networklink_kml("doc.kml"))

    assert len(records(source(link))) == 2


# --- following stays on the source ----------------------------------------------------------

GOOGLE = "https://www.google.com/maps/d/kml?mid=abc&forcekml=1"
MAPS = "https://maps.example.org/agencies.kml"
DNS = {
    "www.google.com": ["142.250.74.36"],
    "mymaps.usercontent.google.com": ["142.250.74.33"],
    "maps.example.org": ["93.184.216.34"],
    "evil.example": ["203.0.114.9"],
    "intranet.example.org": ["10.0.0.5"],
    "metadata.example.org": ["169.254.169.254"],
    "mapped.example.org": ["::ffff:192.168.1.1"],
    "lan-mirror": ["192.168.1.20"],
    "127.0.0.1": ["127.0.0.1"],
    "localhost": ["127.0.0.1"],
}
DEFAULT_HOSTS = SourceConfig().allow_hosts

# (target, source, allow_hosts, why it is refused or None): the rule as a table.
FOLLOWS = [
    ("file:///etc/passwd", GOOGLE, DEFAULT_HOSTS, "only http(s)"),
    ("ftp://www.google.com/map.kml", GOOGLE, DEFAULT_HOSTS, "only http(s)"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "http://127.0.0.1:8000/", [], "only http(s)"),
    ("https://evil.example/x.kml", GOOGLE, DEFAULT_HOSTS, "host evil.example: it is neither"),
    ("https://evil.example/x.kml", MAPS, [], "source.allow_hosts"),
    ("https://www.google.com/maps/d/kml?mid=abc&lid=z", GOOGLE, DEFAULT_HOSTS, None),
    ("http://www.google.com/maps/d/kml?mid=abc", GOOGLE, DEFAULT_HOSTS, None),
    ("https://mymaps.usercontent.google.com/x", GOOGLE, DEFAULT_HOSTS, None),
    ("https://maps.example.org/moved.kml", MAPS, [], None),
    ("https://MAPS.example.org/moved.kml", MAPS, [], None),
    ("https://evil.example/x.kml", MAPS, ["Evil.Example"], None),
    ("http://intranet.example.org/", MAPS, ["intranet.example.org"], "resolves to 10.0.0.5"),
    ("http://metadata.example.org/", MAPS, ["metadata.example.org"], "link-local or private"),
    ("http://169.254.169.254/latest/", MAPS, ["169.254.169.254"], "resolves to 169.254"),
    ("http://mapped.example.org/", MAPS, ["mapped.example.org"], "resolves to ::ffff:c0a8:101"),
    ("http://127.0.0.1:9/", MAPS, ["127.0.0.1"], "loopback"),
    ("http://127.0.0.1:9/other.kml", "http://127.0.0.1:8000/map.kml", [], None),
    ("http://localhost:9/", "http://127.0.0.1:8000/", ["localhost"], None),
    ("http://lan-mirror/b.kml", "http://lan-mirror/a.kml", [], None),
]


@pytest.mark.parametrize(("target", "source_url", "allow", "refusal"), FOLLOWS)
def test_what_a_redirect_or_network_link_may_lead_to(target, source_url, allow, refusal):
    def addresses(host: str) -> list:
        return [ipaddress.ip_address(a) for a in DNS.get(host.lower(), [])]

    problem = check_follow("redirect", target, source_url, allow, addresses).problem

    if refusal is None:
        assert problem is None
    else:
        assert problem is not None and refusal in problem
        assert problem.startswith("refusing to follow a redirect to ")


@pytest.fixture
def other_host():
    """A second server on another loopback address: a host the source never named."""
    with SourceServer(host="127.0.0.2") as server:
        yield server


def redirect(to: str) -> Reply:
    return Reply(b"", status=302, headers={"Location": to}, etag=False)


def test_a_redirect_to_another_host_is_refused_and_never_fetched(
    tmp_path, source_server, other_host
):
    other_host.serve("/internal", to_kml(agencies(3)))
    url = source_server.serve("/map.kml", redirect(other_host.url("/internal")))
    bot = Bot.create(tmp_path, url)

    result = run_cli("poll", "--config", str(bot.config_path))

    assert result.returncode == 3, result.stderr
    assert "host 127.0.0.2" in result.stderr and "source.allow_hosts" in result.stderr
    assert other_host.requests == []
    (poll,) = bot.polls()
    assert poll["outcome"] == "failed" and "source.allow_hosts" in poll["error"]
    assert bot.agencies() == {}


def test_a_network_link_to_another_host_is_refused_and_never_fetched(
    tmp_path, source_server, other_host
):
    other_host.serve("/internal", to_kml(agencies(3)))
    url = source_server.serve("/kml", networklink_kml(other_host.url("/internal")))
    bot = Bot.create(tmp_path, url)

    assert bot.poll().outcome == "failed"

    assert other_host.requests == []
    assert "refusing to follow a NetworkLink to host 127.0.0.2" in bot.polls()[0]["error"]


@pytest.mark.parametrize("how", ["redirect", "NetworkLink"])
def test_a_followed_host_is_fetched_at_the_address_it_was_checked_at(source_server, how):
    """DNS rebinding, on loopback: the resolver answers the check with the source's server
    and any later question with another server on the same port (the internal service a
    rebinding DNS points at). The name resolves nowhere else (.invalid), so the fetch can
    only succeed by connecting to the address that was checked."""
    port = source_server.httpd.server_address[1]
    internal = SourceServer(host="127.0.0.2", port=port).start()
    internal.serve("/map.kml", to_kml(agencies(3)))
    items = agencies(5)
    source_server.serve("/map.kml", to_kml(items))
    target = f"http://rebind.invalid:{port}/map.kml"
    first = redirect(target) if how == "redirect" else Reply(networklink_kml(target))
    asked: list[str] = []

    def rebinding(host: str) -> list:
        asked.append(host)
        return [ipaddress.ip_address("127.0.0.1" if len(asked) == 1 else "127.0.0.2")]

    try:
        config = source(source_server.serve("/start", first), allow_hosts=["rebind.invalid"])
        fetched = fetch(config, addresses=rebinding)
    finally:
        internal.stop()

    assert [fields["name"] for _, fields in parse(fetched, config)] == [a.name for a in items]
    assert fetched.url == target
    assert asked == ["rebind.invalid"]  # checked once; the connection asked no one again
    assert internal.requests == []
    assert source_server.requests[-1]["Host"] == f"rebind.invalid:{port}"  # the name, kept


def _self_signed(name: str, folder: Path) -> tuple[Path, Path]:
    """A certificate for `name` that no one trusts, and its key (PEM files)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


def test_tls_to_a_followed_host_goes_to_the_checked_address_and_checks_the_name(
    source_server, tmp_path
):
    """Over HTTPS the connection goes to the checked address, the handshake names the host
    (SNI) and the certificate is still verified: one no one trusts is refused. (That the
    certificate's name is matched against the host cannot be shown here: no certificate
    for a test name is trusted by the fetch.)"""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_self_signed("rebind.invalid", tmp_path))
    names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _context: names.append(name)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def handshake() -> None:
            connection, _ = listener.accept()
            with connection, contextlib.suppress(ssl.SSLError):
                context.wrap_socket(connection, server_side=True)

        server = threading.Thread(target=handshake, daemon=True)
        server.start()
        url = source_server.serve("/start", redirect(f"https://rebind.invalid:{port}/map.kml"))
        config = source(url, retries=0, allow_hosts=["rebind.invalid"])
        with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(config, addresses=lambda host: [ipaddress.ip_address("127.0.0.1")])
        server.join(timeout=60)

    assert names == ["rebind.invalid"]


def test_a_followed_host_that_did_not_resolve_when_checked_is_not_looked_up_again(
    source_server,
):
    port = source_server.httpd.server_address[1]
    source_server.serve("/map.kml", to_kml(agencies(5)))
    url = source_server.serve("/start", redirect(f"http://rebind.invalid:{port}/map.kml"))
    asked: list[str] = []

    def late(host: str) -> list:  # nothing to the check, the source's server afterwards
        asked.append(host)
        return [ipaddress.ip_address("127.0.0.1")] if len(asked) > 1 else []

    with pytest.raises(FetchError, match="checked at \\(none: it did not resolve\\)"):
        fetch(source(url, retries=0, allow_hosts=["rebind.invalid"]), addresses=late)

    assert asked == ["rebind.invalid"]
    assert [r["path"] for r in source_server.requests] == ["/start"]


@pytest.mark.parametrize("how", ["redirect", "NetworkLink"])
@pytest.mark.parametrize("to", ["file:///etc/passwd", "ftp://127.0.0.1/map.kml"])
def test_only_http_links_are_followed(tmp_path, source_server, how, to):
    answer = redirect(to) if how == "redirect" else Reply(networklink_kml(to))
    bot = Bot.create(tmp_path, source_server.serve("/kml", answer))

    assert bot.poll().outcome == "failed"

    assert f"refusing to follow a {how} to {to}: only http(s)" in bot.polls()[0]["error"]


def test_a_redirect_on_the_same_host_or_to_an_allowed_one_is_followed(tmp_path, source_server):
    items = agencies(4)
    port = source_server.httpd.server_address[1]
    source_server.serve("/final.kml", to_kml(items))
    source_server.serve("/moved.kml", redirect(f"http://localhost:{port}/final.kml"))
    bot = Bot.create(tmp_path, source_server.serve("/map.kml", redirect("/moved.kml")),
                     allow_hosts=["localhost"])  # fmt: skip

    assert bot.poll().outcome == "baseline"

    assert [r["path"] for r in source_server.requests] == ["/map.kml", "/moved.kml", "/final.kml"]
    assert names(bot) == {a.name for a in items}
    assert bot.polls()[0]["url"] == f"http://localhost:{port}/final.kml"


def test_validators_go_back_only_to_the_host_that_issued_them(tmp_path, source_server):
    port = source_server.httpd.server_address[1]
    url = source_server.serve("/map.kml", to_kml(agencies(4)))
    bot = Bot.create(tmp_path, url, allow_hosts=["localhost"])
    assert bot.poll().outcome == "baseline"  # 127.0.0.1 gave an ETag

    # The source now sends us to another (allowed) host: the ETag stays home.
    source_server.serve("/map.kml", redirect(f"http://localhost:{port}/elsewhere.kml"))
    source_server.serve("/elsewhere.kml", to_kml(agencies(4)))
    assert bot.poll().outcome == "unchanged"  # same bytes, read in full

    first, redirected, elsewhere = source_server.requests[:3]
    assert "If-None-Match" not in first  # nothing to validate yet
    assert redirected["If-None-Match"]  # the issuing host gets it back
    assert "If-None-Match" not in elsewhere
    # The last good answer came from localhost: its ETag goes there, not to 127.0.0.1.
    bot.poll()
    again, again_elsewhere = source_server.requests[3:5]
    assert "If-None-Match" not in again
    assert again_elsewhere["If-None-Match"]


# --- JSON and CSV -------------------------------------------------------------------------


def test_json_records_are_mapped_through_the_config(tmp_path, source_server):
    document = {
        "data": {
            "agencies": [
                {"Agency": "Crystal Police Dept.", "Where": "Crystal, Minnesota",
                 "Start": "06/03/2020", "Lat": 45.0327, "Lng": -93.3602, "Beat": 4},
            ]
        }
    }  # fmt: skip
    url = source_server.serve("/api/agencies", json.dumps(document).encode())
    fields = '[source.fields]\nname = "Agency"\naddress = "Where"\nactive_date = "Start"\n'
    bot = Bot.create(tmp_path, url, fields, format="json", records_path="data.agencies")

    bot.poll()

    row = bot.agencies()["mn/crystal-police-department"]
    assert (row["name"], row["city"], row["state"]) == ("Crystal Police Dept.", "Crystal", "MN")
    assert (row["active_date"], row["lat"], row["lon"]) == ("2020-06-03", 45.0327, -93.3602)
    assert json.loads(row["extra"]) == {"Beat": "4"}


def test_geojson_features_give_coordinates_and_properties(tmp_path, source_server):
    feature = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [-93.3602, 45.0327]},
        "properties": {"name": "Crystal Police Department", "address": "Crystal, MN",
                       "Active Date": "2020-06-03", "Video Requests": "3"},
    }  # fmt: skip
    body = json.dumps({"type": "FeatureCollection", "features": [feature]}).encode()
    url = source_server.serve(
        "/agencies.geojson", Reply(body, headers={"Content-Type": "application/geo+json"})
    )
    bot = Bot.create(tmp_path, url)

    bot.poll()

    row = bot.agencies()["mn/crystal-police-department"]
    assert (row["lat"], row["lon"], row["video_requests"]) == (45.0327, -93.3602, 3)


def test_csv_columns_are_mapped_through_the_config(tmp_path, source_server):
    body = (
        b"Dept,Town,ST,Since,Y,X\n"
        b"Crystal Police Department,Crystal,MN,2020-06-03,45.0327,-93.3602\n"
        b'"Smith & Jones, Township PD",Smith Township,Pennsylvania,2018-03-06,40.38,-80.38\n'
    )
    url = source_server.serve("/agencies.csv", body)
    fields = (
        '[source.fields]\nname = "Dept"\ncity = "Town"\nstate = "ST"\n'
        'active_date = "Since"\nlat = "Y"\nlon = "X"\n'
    )
    bot = Bot.create(tmp_path, url, fields)

    bot.poll()

    rows = bot.agencies()
    assert rows["mn/crystal-police-department"]["lon"] == -93.3602
    assert rows["pa/smith-and-jones-township-police-department"]["city"] == "Smith Township"


def test_a_csv_row_with_too_many_cells_is_a_parse_error(source_server):
    url = source_server.serve("/a.csv", b"name,address\nCrystal PD,Crystal,MN,extra\n")

    with pytest.raises(ParseError, match="line 2"):
        records(source(url))


def test_a_csv_cut_off_mid_row_is_a_parse_error(source_server):
    url = source_server.serve(
        "/a.csv", b"name,address,Active Date\nCrystal PD,Crystal MN,2020-06-03\nLas"
    )

    with pytest.raises(ParseError, match="line 3 has fewer cells"):
        records(source(url))


# --- the format registry ------------------------------------------------------------------

# One agency in each built-in format: a KML Placemark, a JSON object, a CSV row.
DOCUMENTS = {
    "kml": b'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
    b"<Placemark><name>Crystal PD</name></Placemark></Document></kml>",
    "json": b'[{"name": "Crystal PD", "address": "Crystal, MN"}]',
    "csv": b'name,address\nCrystal PD,"Crystal, MN"\n',
}


def test_each_format_is_one_module_that_declares_its_name():
    # The order documents that source.format does not name are tried in.
    assert list(FORMATS) == ["kml", "json", "csv"]
    for name, reader in FORMATS.items():
        assert (reader.name, type(reader).__module__) == (name, f"bot.source.formats.{name}")
    # source.format accepts exactly the formats registered, and each reads its documents.
    assert list(FORMATS) == list(CONFIG_FORMATS)
    assert set(DOCUMENTS) == set(FORMATS)


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_source_format_names_the_registered_format_that_reads_the_document(tmp_path, name):
    # Under a name that says another format: source.format decides.
    path = tmp_path / ("agencies.csv" if name == "kml" else "agencies.kml")
    path.write_bytes(DOCUMENTS[name])
    config = source(str(path), format=name)

    fetched = fetch(config)

    assert infer_format(config, fetched) == name
    assert [fields["name"] for _, fields in parse(fetched, config)] == ["Crystal PD"]


@pytest.mark.parametrize(
    ("path", "content_type", "body", "expected"),
    [
        ("/map.kml", "", b"", "kml"),
        ("/agencies.JSON", "", b"", "json"),
        ("/agencies.csv", "", b"", "csv"),
        ("/d/kml", "application/vnd.google-earth.kml+xml", b"", "kml"),
        ("/agencies", "application/geo+json", b"", "json"),
        ("/agencies", "text/csv; charset=utf-8", b"", "csv"),
        # An earlier format's Content-Type outranks a later one's extension.
        ("/agencies.csv", "application/vnd.google-earth.kml+xml", b"", "kml"),
        ("/agencies", "text/plain", DOCUMENTS["kml"], "kml"),
        ("/agencies", "text/plain", b"  " + DOCUMENTS["json"], "json"),
        ("/agencies", "text/plain", DOCUMENTS["csv"], "csv"),
        ("/agencies", "text/plain", b"nothing that says", "kml"),  # the first format
    ],
)
def test_a_document_that_source_format_does_not_name_is_recognised(
    path, content_type, body, expected
):
    fetched = Fetched(f"https://example.org{path}", 200, body, content_type=content_type)

    assert infer_format(source(fetched.url), fetched) == expected


# --- local files ----------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["file url", "plain path"])
def test_a_local_file_is_read(tmp_path, spelling):
    path = tmp_path / "map export.kml"
    path.write_bytes(to_kml(agencies(3)))
    url = path.as_uri() if spelling == "file url" else str(path)
    bot = Bot.create(tmp_path, url)

    assert bot.poll().outcome == "baseline"
    assert len(bot.agencies()) == 3


def test_a_missing_local_file_is_a_fetch_error(tmp_path):
    with pytest.raises(FetchError, match="cannot read"):
        fetch(source(str(tmp_path / "nope.kml")))


# --- HTTP ---------------------------------------------------------------------------------


def test_an_honest_user_agent_is_sent(source_server):
    url = source_server.serve("/map.kml", to_kml(agencies(1)))

    fetch(source(url, user_agent="ringwatch-test/1.0 (+mailto:ops@example.org)"))

    assert source_server.requests[0]["User-Agent"] == "ringwatch-test/1.0 (+mailto:ops@example.org)"


def test_server_errors_are_retried_then_reported(source_server):
    url = source_server.serve("/map.kml", Reply(b"no", status=500))

    with pytest.raises(FetchError, match="HTTP 500") as error:
        fetch(source(url, retries=2))

    assert error.value.status == 500
    assert len(source_server.requests) == 3


def test_a_server_error_followed_by_success_is_a_good_fetch(source_server):
    body = to_kml(agencies(2))
    url = source_server.serve("/map.kml", Reply(b"busy", status=503), Reply(body))

    assert fetch(source(url)).body == body


def test_a_client_error_is_not_retried(source_server):
    url = source_server.serve("/map.kml", Reply(b"gone", status=404))

    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(source(url, retries=3))

    assert len(source_server.requests) == 1


def test_a_slow_server_times_out(source_server):
    url = source_server.serve("/map.kml", Reply(to_kml(agencies(1)), delay=1.0))

    with pytest.raises(FetchError, match=r"within source\.timeout \(0\.2s\)"):
        fetch(source(url, timeout=Duration(0.2), retries=0))


# A server that sends its headers at once and then one byte now and then: every read
# succeeds well within a per-read timeout, so only a deadline on the whole request ends it.
DRIP = 0.2


DRIPPING = {
    "body": {"drip": DRIP},
    # Headers that would take minutes: each read still brings a byte well within a timeout.
    "headers": {"drip": DRIP, "drip_head": True, "headers": {"X-Padding": "x" * 2000}},
}


@pytest.mark.parametrize("part", list(DRIPPING))
def test_a_dripping_source_ends_the_poll_as_a_failed_fetch(tmp_path, source_server, part):
    url = source_server.serve("/map.kml", Reply(to_kml(agencies(3)), **DRIPPING[part]))
    bot = Bot.create(tmp_path, url, timeout="1s", retries=1)

    result = run_cli("poll", "--config", str(bot.config_path), timeout=60)

    assert result.returncode == 3, result.stderr
    (poll,) = bot.polls()
    assert poll["outcome"] == "failed"
    assert "source.timeout" in poll["error"] and url in poll["error"]
    assert len(source_server.requests) == 2  # a slow answer is worth one more try


def test_the_deadline_bounds_every_attempt_and_backoff_together(source_server):
    url = source_server.serve("/map.kml", Reply(to_kml(agencies(3)), drip=DRIP))

    with pytest.raises(FetchError, match=r"source\.deadline \(2s"):
        fetch(source(url, timeout=Duration(1), retries=50, deadline=Duration(2)))

    assert len(source_server.requests) <= 3


@pytest.mark.parametrize("answer", [{"drip": DRIP}, {"delay": 3600}], ids=["dripping", "silent"])
def test_a_stop_abandons_the_fetch_in_progress(source_server, answer):
    url = source_server.serve("/map.kml", Reply(to_kml(agencies(3)), **answer))
    stop = threading.Event()
    errors: list[Exception] = []

    def fetch_until_stopped() -> None:
        try:
            fetch(source(url, timeout=Duration(600), deadline=Duration(600)), stop=stop)
        except FetchError as exc:
            errors.append(exc)

    worker = threading.Thread(target=fetch_until_stopped, daemon=True)
    worker.start()
    source_server_wait(source_server)
    stop.set()
    worker.join(timeout=30)

    assert not worker.is_alive()
    assert "stopping" in str(errors[0])


def source_server_wait(server: SourceServer) -> None:
    """Until the server is answering a request."""
    wait_for(lambda: server.in_flight > 0, timeout=30)


def test_a_refused_connection_is_a_fetch_error():
    with pytest.raises(FetchError, match="ConnectionError"):
        fetch(source(f"{closed_port_url()}/map.kml"))


def test_a_body_shorter_than_its_content_length_is_a_fetch_error(source_server):
    body = to_kml(agencies(3))
    url = source_server.serve("/map.kml", Reply(body, declared_length=len(body) + 500))

    with pytest.raises(FetchError):
        fetch(source(url, retries=0))


def test_a_declared_size_over_the_cap_is_refused(source_server):
    url = source_server.serve("/map.kml", to_kml(agencies(40)))

    with pytest.raises(FetchError, match="cap"):
        fetch(source(url, max_bytes=2048))


def test_an_undeclared_size_over_the_cap_is_refused(source_server):
    body = to_kml(agencies(40))
    url = source_server.serve("/map.kml", Reply(body, chunked=True))

    with pytest.raises(FetchError, match="cap"):
        fetch(source(url, max_bytes=2048, retries=0))


def test_a_chunked_answer_under_the_cap_is_read_whole(source_server):
    body = to_kml(agencies(40))
    url = source_server.serve("/map.kml", Reply(body, chunked=True))

    assert fetch(source(url)).body == body


def test_a_local_file_over_the_cap_is_refused(tmp_path):
    path = tmp_path / "big.kml"
    path.write_bytes(to_kml(agencies(40)))

    with pytest.raises(FetchError, match="cap"):
        fetch(source(str(path), max_bytes=2048))


def test_conditional_get_sends_the_validators_and_understands_304(source_server):
    url = source_server.serve("/map.kml", to_kml(agencies(2)))
    first = fetch(source(url))

    again = fetch(source(url), Validators(etag=first.etag))

    assert source_server.requests[1]["If-None-Match"] == first.etag
    assert again.not_modified and again.body == b""


def test_last_modified_is_sent_back_as_if_modified_since(source_server):
    stamp = "Wed, 03 Jun 2020 12:00:00 GMT"
    url = source_server.serve(
        "/map.kml", Reply(to_kml(agencies(2)), etag=False, headers={"Last-Modified": stamp})
    )
    first = fetch(source(url))

    fetch(source(url), Validators(last_modified=first.last_modified))

    assert source_server.requests[1]["If-Modified-Since"] == stamp


# --- unsafe or broken documents -------------------------------------------------------------


def _entities(depth: int = 9) -> str:
    decls = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, depth + 1)
    ]
    return "".join(decls)


def test_an_entity_bomb_is_refused_without_expanding():
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE kml [{_entities()}]>'
        "<kml><Document><Placemark><name>&lol9;</name></Placemark></Document></kml>"
    )

    with pytest.raises(ParseError, match="DTD or XML entities"):
        list(parse(_fetched(bomb), source("x.kml")))


def test_an_entity_bomb_hidden_behind_a_long_prolog_is_refused():
    padding = "<!--" + "x" * 70_000 + "-->"
    bomb = (
        f'<?xml version="1.0"?>{padding}<!DOCTYPE kml [{_entities()}]>'
        "<kml><Document><Placemark><name>&lol9;</name></Placemark></Document></kml>"
    )

    with pytest.raises(ParseError, match="DTD or XML entities"):
        list(parse(_fetched(bomb), source("x.kml")))


def test_external_entities_are_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    padding = "<!--" + "x" * 70_000 + "-->"
    document = (
        f'<?xml version="1.0"?>{padding}<!DOCTYPE kml [<!ENTITY s SYSTEM "{secret.as_uri()}">]>'
        "<kml><Document><Placemark><name>&s;</name><address>Crystal, MN</address>"
        "</Placemark></Document></kml>"
    )

    try:
        parsed = [fields for _, fields in parse(_fetched(document), source("x.kml"))]
    except ParseError:
        return  # refusing the document is fine too
    assert "TOP-SECRET" not in json.dumps(parsed)


@pytest.mark.parametrize(
    "body",
    [
        b"<html><head><title>Sign in</title></head><body>Sign in</body></html>",
        b"<!DOCTYPE html><html><body><p>Sign in<br></body></html>",
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b'<?xml version="1.0"?><kml><Document><Placemark><name>Crys',
    ],
    ids=["xhtml", "html", "binary", "truncated"],
)
def test_garbage_is_a_parse_error(body):
    with pytest.raises(ParseError):
        list(parse(_fetched(body), source("x.kml", format="kml")))


def test_malformed_json_is_a_parse_error():
    with pytest.raises(ParseError, match="JSON"):
        list(parse(_fetched(b'[{"name": "Crys'), source("x.json")))


def test_json_without_a_list_names_records_path():
    with pytest.raises(ParseError, match="records_path"):
        list(parse(_fetched(b'{"count": 3}'), source("x.json")))


def _fetched(body: str | bytes) -> Fetched:
    data = body.encode() if isinstance(body, str) else body
    return Fetched(url="file:///x", status=200, body=data)


def test_a_missing_document_is_a_fetch_error(source_server: SourceServer):
    with pytest.raises(FetchError, match="404"):
        fetch(source(source_server.url("/nothing-here")))


def test_a_kml_file_path_has_its_format_inferred(tmp_path: Path):
    path = tmp_path / "export"
    path.write_bytes(to_kml(agencies(2)))

    assert len(records(source(str(path)))) == 2


# --- the byte scan that finds unchanged Placemarks -----------------------------------------


def test_the_byte_scan_and_the_parser_agree_on_a_google_export():
    body = to_kml(agencies(30), one_line=False)

    digests = [digest for digest, _ in parse_kml(body)]

    assert digests == placemark_digests(body)
    assert len(set(digests)) == 30


def test_known_placemarks_are_yielded_without_fields():
    body = to_kml(agencies(5))
    known = set(placemark_digests(body)[:4])

    fields = [fields for _, fields in parse_kml(body, known)]

    assert fields[:4] == [None] * 4 and fields[4]["name"]


PREFIXED = (
    '<kml:kml xmlns:kml="http://www.opengis.net/kml/2.2"><kml:Document>'
    "<kml:Placemark><kml:name>Crystal Police Department</kml:name>"
    "<kml:address>Crystal, MN</kml:address></kml:Placemark>"
    "</kml:Document></kml:kml>"
)
COMMENTED = to_kml(agencies(3)).replace(
    b"</Document>", b"<!-- <Placemark><name>Old PD</name></Placemark> --></Document>"
)
CDATA = to_kml(agencies(3)).replace(
    b"</Document>",
    b"<Placemark><name>Ames PD</name><description><![CDATA[pasted </Placemark> markup]]>"
    b"</description><address>Ames, IA</address></Placemark></Document>",
)


def test_a_commented_out_placemark_makes_the_scan_disagree_and_the_parse_say_so():
    with pytest.raises(ScanMismatch, match="found 4 Placemarks, the parser 3"):
        list(parse_kml(COMMENTED))

    names = [fields["name"] for _, fields in parse_kml(COMMENTED, scan=False)]
    assert len(names) == 3 and "Old PD" not in names


@pytest.mark.parametrize("body", [CDATA, PREFIXED.encode()], ids=["CDATA", "kml: prefix"])
def test_a_placemark_the_scan_cannot_pair_turns_it_off(body):
    assert placemark_digests(body) is None
    assert [fields["name"] for _, fields in parse_kml(body)][-1] in (
        "Ames PD",
        "Crystal Police Department",
    )


def test_a_record_is_read_past_a_placemark_in_its_cdata():
    (*_, (_, ames)) = parse_kml(CDATA)

    assert ames["address"] == "Ames, IA"  # read past the CDATA, not cut at it


def test_a_poll_reads_a_document_the_scan_cannot_follow(tmp_path, source_server):
    bot = Bot.create(tmp_path, source_server.serve("/map.kml", COMMENTED))

    assert bot.poll().outcome == "baseline"
    assert len(bot.agencies()) == 3
    assert bot.poll().outcome == "unchanged" and bot.kinds() == []
