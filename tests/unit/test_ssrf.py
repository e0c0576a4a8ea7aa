"""The outbound guard: one test per SSRF vector, each refused with its reason; and what passes."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import httpx
import pytest

from service.errors import ValidationFailed
from service.security.ssrf import (
    OutboundGuard,
    UnsafeURL,
    check_fetch_urls,
    guarded_request,
    refusal,
)


def fake_resolver(table: dict[str, list[str]]) -> OutboundGuard:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise UnsafeURL("the host does not resolve")
        return table[host]

    return OutboundGuard(resolver=resolve)


async def never_resolve(host: str, port: int) -> list[str]:
    raise AssertionError(f"an address literal was resolved as a name: {host!r}")


#: a literal must be judged as the address it is, never handed to a resolver
LITERALS = OutboundGuard(resolver=never_resolve)


async def refused(url: str, guard: OutboundGuard = LITERALS) -> str:
    with pytest.raises(UnsafeURL) as info:
        await guard.check(url)
    return info.value.reason


def url_of(address: str) -> str:
    return f"http://[{address}]/" if ":" in address else f"http://{address}/"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("10.1.2.3", "10.1.2.3 is a private address"),
        ("172.16.0.1", "172.16.0.1 is a private address"),
        ("172.31.255.255", "172.31.255.255 is a private address"),
        ("192.168.1.1", "192.168.1.1 is a private address"),
        ("169.254.169.254", "169.254.169.254 is a link-local address"),
        ("100.64.0.1", "100.64.0.1 is a shared (CGNAT) address"),
        ("0.0.0.0", "0.0.0.0 is an unspecified address"),  # noqa: S104
        ("0.1.2.3", '0.1.2.3 is a "this network" address'),
        ("198.18.0.1", "198.18.0.1 is a benchmarking address"),
        ("224.0.0.1", "224.0.0.1 is a multicast address"),
        ("240.0.0.1", "240.0.0.1 is a private address"),
        ("::1", "::1 is a loopback address"),
        ("::", ":: is an unspecified address"),
        ("fc00::1", "fc00::1 is a private address"),
        ("fd12::1", "fd12::1 is a private address"),
        ("fe80::1", "fe80::1 is a link-local address"),
        ("ff02::1", "ff02::1 is a multicast address"),
        ("64:ff9b:1::a00:1", "64:ff9b:1::a00:1 is a local-use NAT64 address"),
    ],
)
async def test_address_is_refused(address: str, reason: str) -> None:
    assert refusal(ip_address(address)) == reason
    assert await refused(url_of(address)) == reason


@pytest.mark.parametrize(
    ("address", "form", "inner"),
    [
        ("::ffff:127.0.0.1", "an IPv4-mapped", "127.0.0.1 is a loopback address"),
        ("::ffff:10.0.0.1", "an IPv4-mapped", "10.0.0.1 is a private address"),
        ("64:ff9b::7f00:1", "a NAT64", "127.0.0.1 is a loopback address"),
        ("64:ff9b::a00:1", "a NAT64", "10.0.0.1 is a private address"),
        ("2002:7f00:1::", "a 6to4", "127.0.0.1 is a loopback address"),
        ("2002:c0a8:101::", "a 6to4", "192.168.1.1 is a private address"),
        # Teredo server 65.54.227.120 (public), client 192.0.2.45 (documentation)
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a Teredo", "192.0.2.45 is a private address"),
    ],
)
async def test_ipv6_embedding_a_refused_ipv4_is_refused(
    address: str, form: str, inner: str
) -> None:
    reason = refusal(ip_address(address))
    assert reason == f"{ip_address(address)} is {form} address and {inner}"
    assert await refused(url_of(address)) == reason


@pytest.mark.parametrize(
    "address", ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::", "93.184.215.14"]
)
def test_embedding_a_public_ipv4_passes(address: str) -> None:
    assert refusal(ip_address(address)) is None


async def test_bracketed_ipv6_loopback_literal() -> None:
    assert await refused("http://[::1]/") == "::1 is a loopback address"


async def test_bracketed_ipv4_mapped_literal() -> None:
    reason = await refused("http://[::ffff:127.0.0.1]:8080/x")
    assert "IPv4-mapped" in reason and reason.endswith("127.0.0.1 is a loopback address")


@pytest.mark.parametrize("url", ["http://[not-v6]/", "http://[::1/", "http://[127.0.0.1]/"])
async def test_bracketed_garbage_is_not_an_address(url: str) -> None:
    assert await refused(url) == "the URL is not valid"


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",  # decimal
        "http://0177.0.0.1/",  # octal
        "http://0x7f000001/",  # hex
        "http://0x7f.1/",  # hex, short
        "http://127.1/",  # short
        "http://0177.1:8080/x",
    ],
)
async def test_odd_ipv4_spelling_is_read_as_the_address_it_means(url: str) -> None:
    assert await refused(url) == "127.0.0.1 is a loopback address"


async def test_trailing_garbage_after_an_address_is_a_name_not_the_address() -> None:
    # inet_aton("127.0.0.1 x") is 127.0.0.1; as a name it does not even get to a resolver.
    assert await refused("http://127.0.0.1%20x/") == "the host name is not valid"


async def test_name_resolving_to_a_private_address() -> None:
    guard = fake_resolver({"internal.test": ["10.0.0.5"]})
    assert await refused("https://internal.test/hook", guard) == (
        "internal.test resolves to an address not allowed (10.0.0.5 is a private address)"
    )


async def test_one_private_address_among_good_ones_refuses_the_name() -> None:
    guard = fake_resolver({"mixed.test": ["93.184.215.14", "192.168.0.7"]})
    reason = await refused("https://mixed.test/", guard)
    assert "192.168.0.7 is a private address" in reason


async def test_name_resolving_to_an_ipv4_mapped_loopback() -> None:
    guard = fake_resolver({"sneaky.test": ["::ffff:127.0.0.1"]})
    assert "127.0.0.1 is a loopback address" in await refused("http://sneaky.test/", guard)


async def test_localhost_with_the_system_resolver() -> None:
    reason = await refused("http://localhost:8000/", OutboundGuard())
    assert reason.startswith("localhost resolves to an address not allowed (")
    assert "loopback address" in reason


async def test_unresolvable_host_with_the_system_resolver() -> None:
    assert await refused("https://no-such-host.invalid/", OutboundGuard()) == (
        "the host does not resolve"
    )


async def test_resolver_answering_nothing() -> None:
    guard = OutboundGuard(resolver=lambda host, port: _empty())
    assert await refused("https://empty.test/", guard) == "the host does not resolve"


async def _empty() -> list[str]:
    return []


@pytest.mark.parametrize(
    "url", ["ftp://8.8.8.8/file", "file:///etc/passwd", "gopher://8.8.8.8/", "//8.8.8.8/"]
)
async def test_only_http_and_https(url: str) -> None:
    assert await refused(url) == "only http and https URLs are allowed"


@pytest.mark.parametrize(
    "url", ["http://user:pass@8.8.8.8/", "http://user@8.8.8.8/", "http://@8.8.8.8/"]
)
async def test_credentials_in_the_url(url: str) -> None:
    assert await refused(url) == "credentials in the URL (user:pass@) are not allowed"


@pytest.mark.parametrize("url", ["http:///path", "https://:443/"])
async def test_a_host_is_required(url: str) -> None:
    assert await refused(url) == "the URL has no host"


@pytest.mark.parametrize("url", ["http://8.8.8.8:0/", "http://8.8.8.8:99999/", "http://8.8.8.8:x/"])
async def test_port_must_be_valid(url: str) -> None:
    assert await refused(url) == "the port is not a number between 1 and 65535"


async def test_public_ipv4_literal_passes() -> None:
    target = await LITERALS.check("https://93.184.215.14/a?b=1")
    assert (target.scheme, target.host, target.port, target.ip) == (
        "https",
        "93.184.215.14",
        443,
        "93.184.215.14",
    )
    assert target.url == "https://93.184.215.14/a?b=1"


async def test_public_ipv6_literal_passes() -> None:
    target = await LITERALS.check("http://[2606:4700::1111]:8080/")
    assert (target.host, target.port, target.ip) == ("2606:4700::1111", 8080, "2606:4700::1111")


async def test_public_name_passes_with_the_first_address() -> None:
    guard = fake_resolver({"hooks.example.com": ["93.184.215.14", "2606:4700::1111"]})
    target = await guard.check("HTTPS://Hooks.Example.COM/in")
    assert (target.scheme, target.host, target.port, target.ip) == (
        "https",
        "hooks.example.com",
        443,
        "93.184.215.14",
    )


async def test_allow_opens_loopback_and_nothing_else() -> None:
    guard = OutboundGuard(allow=(ip_network("127.0.0.0/8"),), resolver=never_resolve)
    assert (await guard.check("http://127.0.0.1:8000/")).ip == "127.0.0.1"
    assert (await guard.check("http://127.1/")).ip == "127.0.0.1"
    assert await refused("http://10.0.0.1/", guard) == "10.0.0.1 is a private address"
    assert refusal(ip_address("::ffff:127.0.0.1"), guard.allow) is None


async def test_check_fetch_urls_names_the_field_and_index() -> None:
    guard = fake_resolver({"cdn.example.com": ["93.184.215.14"]})
    params = {
        "prompt": "a fox",
        "image_urls": ["https://cdn.example.com/1.png", "http://169.254.169.254/latest/"],
    }
    with pytest.raises(ValidationFailed) as info:
        await check_fetch_urls(guard, params)
    assert info.value.field == "params.image_urls[1]"
    assert info.value.extra["errors"] == [
        {"field": "params.image_urls[1]", "message": "169.254.169.254 is a link-local address"}
    ]


async def test_check_fetch_urls_single_field() -> None:
    with pytest.raises(ValidationFailed) as info:
        await check_fetch_urls(LITERALS, {"mask_url": "file:///etc/passwd"})
    assert info.value.field == "params.mask_url"
    assert info.value.detail == "params.mask_url: only http and https URLs are allowed"


async def test_check_fetch_urls_skips_data_urls_and_absent_fields() -> None:
    guard = fake_resolver({"cdn.example.com": ["93.184.215.14"]})
    params = {
        "image_urls": ["data:image/png;base64,iVBORw0KGgo=", "https://cdn.example.com/2.png"],
        "mask_url": "DATA:image/png;base64,AAAA",
        "end_url": None,
        "prompt": "http://127.0.0.1/ a fox",  # free text: the provider's to read
    }
    await check_fetch_urls(guard, params)


@pytest.mark.parametrize("field", ["dref", "cref", "sref", "some_future_field"])
async def test_check_fetch_urls_checks_every_url_valued_param(field: str) -> None:
    # Not only the fields listed: any param that is an http(s) URL is one a provider fetches.
    for value, name in (
        ("http://169.254.169.254/", f"params.{field}"),
        (["1234", " HTTP://10.0.0.1/x.png"], f"params.{field}[1]"),
    ):
        with pytest.raises(ValidationFailed) as info:
            await check_fetch_urls(LITERALS, {"prompt": "a fox", field: value})
        assert info.value.field == name
    await check_fetch_urls(LITERALS, {field: ["1234", "random", "http://8.8.8.8/s.png"]})


async def test_check_fetch_urls_refuses_a_non_string() -> None:
    with pytest.raises(ValidationFailed) as info:
        await check_fetch_urls(LITERALS, {"image_urls": ["http://8.8.8.8/", 7]})
    assert info.value.field == "params.image_urls[1]"


async def sent_by_guarded_request(url: str, guard: OutboundGuard) -> httpx.Request:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), trust_env=False) as http:
        response = await guarded_request(http, guard, "POST", url, content=b"{}")
    assert response.status_code == 204 and response.body == b"" and not response.truncated
    (request,) = requests
    return request


async def test_https_name_connects_to_the_address_and_keeps_the_name_for_tls() -> None:
    guard = fake_resolver({"hooks.example.com": ["93.184.215.14"]})
    request = await sent_by_guarded_request("https://Hooks.Example.com/in?x=1#frag", guard)
    assert str(request.url) == "https://93.184.215.14/in?x=1"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.headers["accept-encoding"] == "identity"


async def test_ipv6_address_is_bracketed_and_the_port_kept_in_host() -> None:
    guard = fake_resolver({"v6.example.com": ["2606:4700::1111"]})
    request = await sent_by_guarded_request("http://v6.example.com:8080/p", guard)
    assert str(request.url) == "http://[2606:4700::1111]:8080/p"
    assert request.headers["host"] == "v6.example.com:8080"
    assert "sni_hostname" not in request.extensions


async def test_literal_https_needs_no_sni_name() -> None:
    request = await sent_by_guarded_request("https://[2606:4700::1111]:8443/", LITERALS)
    assert str(request.url) == "https://[2606:4700::1111]:8443/"
    assert request.headers["host"] == "[2606:4700::1111]:8443"
    assert "sni_hostname" not in request.extensions


async def test_international_name_goes_on_the_wire_as_idna() -> None:
    guard = fake_resolver({"xn--bcher-kva.example": ["93.184.215.14"]})
    request = await sent_by_guarded_request("https://bücher.example/", guard)
    assert request.headers["host"] == "xn--bcher-kva.example"
    assert request.extensions["sni_hostname"] == "xn--bcher-kva.example"


async def test_a_refused_url_sends_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), trust_env=False) as http:
        with pytest.raises(UnsafeURL):
            await guarded_request(http, LITERALS, "POST", "http://169.254.169.254/latest/")
