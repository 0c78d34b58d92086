"""A Streamable HTTP server of the official Python MCP SDK that is its own
OAuth 2.1 authorization server, with the SDK's auth support: protected
resource metadata (RFC 9728), authorization server metadata (RFC 8414),
dynamic client registration (RFC 7591), PKCE and refresh. Its provider
keeps everything in memory and approves every authorization at once,
redirecting straight back to the client with a code.

Each grant and registration is appended to RECORD as a JSON line:
{"event": "register" | "authorize" | "authorization_code" |
"refresh_token" | "revoke", ...}.
Access tokens live TTL seconds (env TOKEN_TTL, default 3600). With
PRE_REGISTERED=ID, a public client of that id is known from the start,
whose redirect may be any loopback port (RFC 8252, 7.3).

usage: oauth_server.py PORT RECORD
"""

import json
import os
import secrets
import sys
import time

import uvicorn
from mcp.server.auth.handlers import revoke as _revoke
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

SCOPE = "mcp"


class PublicRevocation(_revoke.RevocationRequest):
    """The SDK's revocation request wants a `client_secret` field even
    from a public client, which RFC 7009 does not ask of it: here it may
    be absent."""

    client_secret: str | None = None


_revoke.RevocationRequest = PublicRevocation


class LoopbackClient(OAuthClientInformationFull):
    """A client registered beforehand for http://127.0.0.1/callback: any
    port of the loopback address serves, as RFC 8252 has it."""

    def validate_redirect_uri(self, redirect_uri):
        if (
            redirect_uri is not None
            and redirect_uri.scheme == "http"
            and redirect_uri.host == "127.0.0.1"
            and redirect_uri.path == "/callback"
        ):
            return redirect_uri
        return super().validate_redirect_uri(redirect_uri)


class ApprovingProvider:
    """An authorization server that says yes to everyone, in memory."""

    def __init__(self, record, ttl):
        self.record = record
        self.ttl = ttl
        self.clients = {}
        self.codes = {}
        self.access = {}
        self.refresh = {}

    def note(self, event, **fields):
        self.record.write(json.dumps({"event": event, **fields}) + "\n")
        self.record.flush()

    async def get_client(self, client_id):
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull):
        self.clients[client_info.client_id] = client_info
        self.note("register", client_id=client_info.client_id,
                  redirect_uris=[str(u) for u in client_info.redirect_uris or []])

    async def authorize(self, client, params: AuthorizationParams):
        code = secrets.token_urlsafe(32)
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=params.scopes or [SCOPE],
            expires_at=time.time() + 300,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
        )
        self.note("authorize", resource=params.resource, scopes=params.scopes)
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(self, client, authorization_code):
        return self.codes.get(authorization_code)

    def issue(self, client_id, scopes, resource):
        access = secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(32)
        self.access[access] = AccessToken(
            token=access, client_id=client_id, scopes=scopes,
            expires_at=int(time.time() + self.ttl), resource=resource,
        )
        self.refresh[refresh] = RefreshToken(token=refresh, client_id=client_id, scopes=scopes, resource=resource)
        return OAuthToken(access_token=access, expires_in=self.ttl, scope=" ".join(scopes), refresh_token=refresh)

    async def exchange_authorization_code(self, client, authorization_code):
        self.codes.pop(authorization_code.code, None)
        self.note("authorization_code", resource=authorization_code.resource)
        return self.issue(client.client_id, authorization_code.scopes, authorization_code.resource)

    async def load_refresh_token(self, client, refresh_token):
        token = self.refresh.get(refresh_token)
        return token if token and token.client_id == client.client_id else None

    async def exchange_refresh_token(self, client, refresh_token, scopes):
        if self.refresh.pop(refresh_token.token, None) is None:
            raise TokenError("invalid_grant", "refresh token already used")
        self.note("refresh_token", resource=refresh_token.resource)
        return self.issue(client.client_id, scopes or refresh_token.scopes, refresh_token.resource)

    async def load_access_token(self, token):
        found = self.access.get(token)
        if found and found.expires_at and found.expires_at < time.time():
            return None
        return found

    async def revoke_token(self, token):
        self.note("revoke", kind=type(token).__name__)
        self.access.pop(token.token, None)
        self.refresh.pop(token.token, None)


if __name__ == "__main__":
    port, record = int(sys.argv[1]), open(sys.argv[2], "a", encoding="utf-8")
    base = f"http://127.0.0.1:{port}"
    provider = ApprovingProvider(record, int(os.environ.get("TOKEN_TTL", "3600")))
    if os.environ.get("PRE_REGISTERED"):
        client_id = os.environ["PRE_REGISTERED"]
        provider.clients[client_id] = LoopbackClient(
            client_id=client_id,
            redirect_uris=["http://127.0.0.1/callback"],
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            scope=SCOPE,
        )
    server = MCPServer(
        "oauth-server",
        auth_server_provider=provider,
        auth=AuthSettings(
            issuer_url=base,
            resource_server_url=f"{base}/mcp",
            validate_token_resource=True,
            required_scopes=[SCOPE],
            client_registration_options=ClientRegistrationOptions(
                enabled=True, valid_scopes=[SCOPE], default_scopes=[SCOPE]
            ),
            revocation_options=RevocationOptions(enabled=True),
        ),
    )

    @server.tool()
    def whoami() -> str:
        """Says that the caller holds a token."""
        return "you hold a token"

    @server.tool()
    def reverse(text: str) -> str:
        """Reverses a text."""
        return text[::-1]

    uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
