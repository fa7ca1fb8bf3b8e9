// A real OpenID provider for tests/test_oauth.py (panva's oidc-provider, pinned in package.json).
// It issues JWT access tokens (RFC 9068) for callsheet's resource (RFC 8707 resource indicators):
//   - by the client credentials grant, to two confidential clients, alice (read and generate) and bob
//     (read only): each client is one caller, its client id the token's subject;
//   - by the authorization code grant with PKCE, to clients that register themselves (RFC 7591), as an
//     MCP client's authorization flow does; the sign-in form accepts any login (the provider's
//     development interactions), the login becoming the token's subject.
// Usage: node server.mjs <port> <resource> <jwks.json>   (the test writes the signing keys, so it can
// also sign tokens with the issuer's own key: expired, wrong issuer).
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, resource, jwksPath] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const SCOPES = "callsheet:read callsheet:generate";
const OTHER = "https://other.example/mcp"; // a resource that is not callsheet: for wrong-audience tokens

const provider = new Provider(issuer, {
  jwks: JSON.parse(readFileSync(jwksPath, "utf8")),
  clients: [
    { client_id: "alice", client_secret: "alice-secret", grant_types: ["client_credentials"], redirect_uris: [], response_types: [], scope: SCOPES },
    { client_id: "bob", client_secret: "bob-secret", grant_types: ["client_credentials"], redirect_uris: [], response_types: [], scope: "callsheet:read" },
  ],
  scopes: ["openid", "offline_access", "callsheet:read", "callsheet:generate"],
  features: {
    clientCredentials: { enabled: true },
    registration: { enabled: true },
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource && indicator !== OTHER) throw new Error(`unknown resource ${indicator}`);
        return { scope: SCOPES, audience: indicator, accessTokenTTL: 600, accessTokenFormat: "jwt", jwt: { sign: { alg: "RS256" } } };
      },
    },
  },
  // The authorization code flow: grant what the client asked for, for callsheet's resource.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope("openid offline_access");
    grant.addResourceScope(resource, SCOPES);
    await grant.save();
    return grant;
  },
  pkce: { required: () => true },
  clientBasedCORS: () => true,
});
provider.proxy = false;
provider.listen(Number(port), "127.0.0.1", () => console.log(`oidc-provider listening at ${issuer}`));
