// Verifies keyturn access tokens with jose (panva/jose), given only a JWK Set or its URL.
// Reads {"cases": [{token, issuer, audience, jwks? | jwks_uri?}]} on stdin; prints one result per case:
// {"ok": true, "sub": ..., "alg": ...} or {"ok": false, "error": "<jose error code>"}.
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify } from "jose";

const input = JSON.parse(await new Promise((resolve, reject) => {
  let text = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => { text += chunk; });
  process.stdin.on("end", () => resolve(text));
  process.stdin.on("error", reject);
}));

async function verify({ token, issuer, audience, jwks, jwks_uri: jwksUri }) {
  const keys = jwks ? createLocalJWKSet(jwks) : createRemoteJWKSet(new URL(jwksUri));
  try {
    const { payload, protectedHeader } = await jwtVerify(token, keys, { issuer, audience, typ: "at+jwt" });
    return { ok: true, sub: payload.sub, alg: protectedHeader.alg };
  } catch (error) {
    return { ok: false, error: error.code ?? String(error) };
  }
}

const results = [];
for (const item of input.cases) {
  results.push(await verify(item));
}
process.stdout.write(JSON.stringify(results));
