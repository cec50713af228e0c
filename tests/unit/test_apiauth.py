"""scaler.apiauth without sockets: parsing the extension-apiserver-authentication ConfigMap
(defaults, JSON lists, bad values named), front-proxy identity from headers (allowed CN,
groups, extra, case), client-CA users, bearer tokens via a TokenReviewer, and the
Authorizer's rules (health paths, system:masters, anonymous)."""

from __future__ import annotations

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from scaler.apiauth import (
    AuthenticationConfig,
    Authenticator,
    Authorizer,
    RequestAttributes,
    UserInfo,
)

PROXY_CA = trustme.CA()
CLIENT_CA = trustme.CA()
ROGUE_CA = trustme.CA()


def der(ca, cn, org=None):
    leaf = ca.issue_cert(cn, common_name=cn, organization_name=org)
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    return cert.public_bytes(Encoding.DER)


def config_map(**extra):
    return {
        "requestheader-client-ca-file": PROXY_CA.cert_pem.bytes().decode(),
        "client-ca-file": CLIENT_CA.cert_pem.bytes().decode(),
        "requestheader-allowed-names": '["front-proxy-client"]',
    } | extra


def headers(**values):
    return {
        k.lower().replace("_", "-"): v if isinstance(v, list) else [v] for k, v in values.items()
    }


def test_config_map_defaults_and_lists():
    config = AuthenticationConfig.from_config_map(config_map())
    assert config.requestheader is not None
    assert config.requestheader.username_headers == ("X-Remote-User",)
    assert config.requestheader.allowed_names == ("front-proxy-client",)
    assert "BEGIN CERTIFICATE" in config.trusted_ca_pem()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"requestheader-allowed-names": "front-proxy-client"}, "requestheader-allowed-names"),
        ({"requestheader-group-headers": "[1]"}, "requestheader-group-headers"),
        ({"requestheader-client-ca-file": "not pem"}, "requestheader-client-ca-file"),
        ({"client-ca-file": "junk"}, "client-ca-file"),
    ],
)
def test_config_map_errors_name_the_key(data, field):
    with pytest.raises(ValueError, match=field):
        AuthenticationConfig.from_config_map(config_map(**data))


def test_front_proxy_identity():
    auth = Authenticator(AuthenticationConfig.from_config_map(config_map()))
    user = auth.authenticate(
        peer_certificate_der=der(PROXY_CA, "front-proxy-client"),
        headers=headers(
            x_remote_user="alice",
            x_remote_group=["a", "b"],
            **{"x-remote-extra-scopes": ["s1", "s2"]},
        ),
    )
    assert user == UserInfo(
        "alice", ("a", "b", "system:authenticated"), {"scopes": ("s1", "s2")}, via="front-proxy"
    )


def test_disallowed_cn_and_rogue_ca_ignore_headers():
    auth = Authenticator(AuthenticationConfig.from_config_map(config_map()))
    for cert in (der(PROXY_CA, "mallory"), der(ROGUE_CA, "front-proxy-client")):
        assert (
            auth.authenticate(peer_certificate_der=cert, headers=headers(x_remote_user="admin"))
            is None
        )


def test_client_ca_user_and_tokens():
    class Tokens:
        def review(self, token):
            return UserInfo("bob", via="token") if token == "t0k" else None

    auth = Authenticator(
        AuthenticationConfig.from_config_map(config_map()), token_reviewer=Tokens()
    )
    user = auth.authenticate(peer_certificate_der=der(CLIENT_CA, "carol", "ops"), headers={})
    assert user is not None
    assert (user.name, user.groups) == (
        "carol",
        ("ops", "system:authenticated"),
    )
    token_user = auth.authenticate(
        peer_certificate_der=None, headers=headers(authorization="Bearer t0k")
    )
    assert token_user is not None
    assert token_user.name == "bob"
    assert (
        auth.authenticate(peer_certificate_der=None, headers=headers(authorization="Bearer nope"))
        is None
    )
    assert (
        auth.authenticate(peer_certificate_der=None, headers=headers(authorization="Basic abc"))
        is None
    )


def test_authorizer_rules():
    attrs = RequestAttributes(verb="list", path="/apis/x", resource_request=True)
    health = RequestAttributes(verb="get", path="/healthz", resource_request=False)

    class Deny:
        def allowed(self, user, attributes):
            return False

    strict = Authorizer(access_reviewer=Deny())
    assert strict.allowed(None, health)
    assert not strict.allowed(None, attrs)
    assert strict.allowed(UserInfo("root", ("system:masters",)), attrs)
    assert not strict.allowed(UserInfo("u", ("g",)), attrs)
    assert Authorizer().allowed(UserInfo("u", ("g",), via="x509"), attrs)
    assert Authorizer(allow_anonymous=True).allowed(None, attrs)
