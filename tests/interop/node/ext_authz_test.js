#!/usr/bin/env node
// Interop: a gRPC client nobody here wrote (@grpc/grpc-js) loads Envoy's own
// envoy/service/auth/v3/external_auth.proto from @grpc/grpc-js-xds and asks
// `meshid authz serve` for decisions, as Envoy's ext_authz filter would: allow, RBAC deny
// (403), JWT failure (401), TCP (network filter, no HTTP attributes), a malformed request
// failing closed, hot reload of the policy directory, and a unix: socket listener.
//
// Usage: node ext_authz_test.js <path to meshid binary>
'use strict';

const assert = require('assert');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const http_get = require('http').get;
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const MESHID = process.argv[2];
if (!MESHID || !fs.existsSync(MESHID)) {
  console.error('usage: node ext_authz_test.js <meshid binary>');
  process.exit(2);
}
const DEPS = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const INCLUDES = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => path.join(DEPS, d));
const definition = protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: INCLUDES,
});
const Authorization = grpc.loadPackageDefinition(definition).envoy.service.auth.v3.Authorization;

// ---- a JWT issuer (ES256) with its key set inline in the policy ----
const { publicKey, privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256', use: 'sig' };
const b64url = (buf) => Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
function signJwt(claims) {
  const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: 'k1' }));
  const payload = b64url(JSON.stringify(claims));
  const sig = crypto.sign('sha256', Buffer.from(`${header}.${payload}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${header}.${payload}.${b64url(sig)}`;
}
const now = Math.floor(Date.now() / 1000);
const goodToken = signJwt({ iss: 'https://issuer.test', sub: 'alice', exp: now + 3600 });
const expiredToken = signJwt({ iss: 'https://issuer.test', sub: 'alice', exp: now - 3600 });

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-ext-authz-'));
const policyFile = path.join(dir, 'policy.yaml');
const basePolicy = `
apiVersion: v1
kind: Service
metadata: {name: b, namespace: ns}
spec:
  selector: {app: b}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp-db, port: 5432}]
---
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: jwt, namespace: ns}
spec:
  jwtRules:
  - issuer: https://issuer.test
    jwks: '${JSON.stringify({ keys: [jwk] })}'
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow-reader, namespace: ns}
spec:
  selector: {matchLabels: {app: b}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/a/sa/reader]}}]
    to: [{operation: {methods: [GET], paths: ["/api/*"]}}]
  - from: [{source: {requestPrincipals: [https://issuer.test/alice]}}]
    to: [{operation: {paths: ["/me"]}}]
  - from: [{source: {principals: [cluster.local/ns/a/sa/db-client]}}]
    to: [{operation: {ports: ["5432"]}}]
`;
fs.writeFileSync(policyFile, basePolicy);

function startServer(listen) {
  const child = spawn(MESHID, ['authz', 'serve', '--config', dir, '--listen', listen, '--reload-interval', '100ms',
    '--service', 'b.ns.svc.cluster.local', '--monitoring', '127.0.0.1:0', '--log-level', 'warn'],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const ready = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d.toString();
      const listening = out.match(/listening on (\S+)/);
      const monitoring = out.match(/monitoring on (\S+)/);
      if (listening && monitoring) resolve({ address: listening[1], monitoring: monitoring[1] });
    });
    child.on('exit', (code) => reject(new Error(`meshid authz serve exited with ${code}`)));
  });
  return { child, address: ready.then((r) => r.address), monitoring: ready.then((r) => r.monitoring) };
}

function check(client, attributes) {
  return new Promise((resolve, reject) => {
    client.Check({ attributes }, { deadline: Date.now() + 10000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

const peer = (ip, port, principal = '') => ({
  address: { socket_address: { address: ip, port_value: port } },
  principal,
});
function http(method, pathAndQuery, headers = {}) {
  return { http: { method, path: pathAndQuery, host: 'b.ns.svc.cluster.local', headers } };
}

async function expectDecision(client, name, attributes, want) {
  const res = await check(client, attributes);
  const code = res.status ? res.status.code : 0;
  try {
    if (want.allowed) {
      assert.strictEqual(code, 0, 'grpc status OK');
      assert.strictEqual(res.http_response, 'ok_response');
    } else {
      assert.strictEqual(code, want.http === 401 ? 16 : 7, 'grpc status UNAUTHENTICATED / PERMISSION_DENIED');
      assert.strictEqual(res.http_response, 'denied_response');
      assert.strictEqual(res.denied_response.status.code, want.http === 401 ? 'Unauthorized' : 'Forbidden');
    }
    if (want.policy !== undefined) {
      assert.strictEqual(res.dynamic_metadata.fields.policy.stringValue, want.policy);
    }
    if (want.body !== undefined) assert.ok(res.denied_response.body.includes(want.body), res.denied_response.body);
  } catch (e) {
    e.message = `${name}: ${e.message}\nresponse: ${JSON.stringify(res)}`;
    throw e;
  }
  console.log(`ok - ${name}`);
}

function metric(monitoring, name) {
  return new Promise((resolve, reject) => {
    http_get(`http://${monitoring}/metrics`, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        const line = body.split('\n').find((l) => l.startsWith(name));
        resolve(line ? Number(line.split(' ').pop()) : 0);
      });
    }).on('error', reject);
  });
}

async function waitFor(what, fn, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main() {
  const server = startServer('127.0.0.1:0');
  const cleanup = [() => server.child.kill('SIGTERM')];
  try {
    const address = await server.address;
    const client = new Authorization(address, grpc.credentials.createInsecure());
    const dest = peer('10.0.0.2', 8080, 'spiffe://cluster.local/ns/ns/sa/b');
    const labels = { app: 'b' };

    await expectDecision(client, 'mtls reader GET allowed', {
      source: peer('10.0.0.1', 40000, 'spiffe://cluster.local/ns/a/sa/reader'),
      destination: { ...dest, labels }, request: http('GET', '/api/items?x=1'),
      tls_session: { sni: 'outbound_.80_._.b.ns.svc.cluster.local' },
    }, { allowed: true, policy: 'ns/allow-reader' });
    await expectDecision(client, 'mtls reader POST denied 403', {
      source: peer('10.0.0.1', 40000, 'spiffe://cluster.local/ns/a/sa/reader'),
      destination: { ...dest, labels }, request: http('POST', '/api/items'),
    }, { allowed: false, http: 403, body: 'RBAC: access denied' });
    await expectDecision(client, 'path normalisation closes ../ bypass', {
      source: peer('10.0.0.1', 40000, 'spiffe://cluster.local/ns/a/sa/reader'),
      destination: { ...dest, labels }, request: http('GET', '/api/%2E%2E/admin'),
    }, { allowed: false, http: 403 });
    await expectDecision(client, 'plaintext caller has no principal', {
      source: peer('10.0.0.1', 40000), destination: { ...dest, labels }, request: http('GET', '/api/items'),
    }, { allowed: false, http: 403 });
    await expectDecision(client, 'valid JWT allowed', {
      source: peer('10.0.0.1', 40000), destination: { ...dest, labels },
      request: http('GET', '/me', { authorization: `Bearer ${goodToken}` }),
    }, { allowed: true, policy: 'ns/allow-reader' });
    await expectDecision(client, 'expired JWT 401', {
      source: peer('10.0.0.1', 40000), destination: { ...dest, labels },
      request: http('GET', '/me', { authorization: `Bearer ${expiredToken}` }),
    }, { allowed: false, http: 401, body: 'Jwt is expired' });
    await expectDecision(client, 'missing JWT passes authn, RBAC 403', {
      source: peer('10.0.0.1', 40000), destination: { ...dest, labels }, request: http('GET', '/me'),
    }, { allowed: false, http: 403 });
    await expectDecision(client, 'TCP (network filter) allowed by port rule', {
      source: peer('10.0.0.1', 40000, 'spiffe://cluster.local/ns/a/sa/db-client'),
      destination: { ...peer('10.0.0.2', 5432), labels },
    }, { allowed: true });
    await expectDecision(client, 'TCP drops HTTP-only ALLOW rules', {
      source: peer('10.0.0.1', 40000, 'spiffe://cluster.local/ns/a/sa/reader'),
      destination: { ...peer('10.0.0.2', 8080), labels },
    }, { allowed: false, http: 403 });
    await expectDecision(client, 'context_extensions choose the service', {
      source: peer('10.0.0.1', 40000, 'spiffe://cluster.local/ns/a/sa/reader'),
      destination: peer('10.0.0.2', 8080), context_extensions: { service: 'other.elsewhere.svc.cluster.local' },
      request: http('DELETE', '/'),
    }, { allowed: true, policy: '' });
    await expectDecision(client, 'undecidable request fails closed', {
      source: peer('10.0.0.1', 40000, 'spiffe://cluster.local/ns/a/sa/reader'),
      destination: { ...dest, labels }, request: http('GET', 'no-leading-slash'),
    }, { allowed: false, http: 403 });

    // Hot reload: a broken file keeps the last good policy; a good change takes effect.
    const post = {
      source: peer('10.0.0.1', 40000, 'spiffe://cluster.local/ns/a/sa/reader'),
      destination: { ...dest, labels }, request: http('POST', '/api/items'),
    };
    fs.writeFileSync(path.join(dir, 'broken.yaml'), 'apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: ns}\nspec: {action: NOPE}\n');
    const monitoring = await server.monitoring;
    await waitFor('the broken reload to be reported',
      async () => (await metric(monitoring, 'meshid_policy_reloads_total{result="error"}')) >= 1);
    await expectDecision(client, 'broken file: last good policy stays in force', post, { allowed: false, http: 403 });
    fs.unlinkSync(path.join(dir, 'broken.yaml'));
    fs.writeFileSync(policyFile, basePolicy.replace('methods: [GET]', 'methods: [GET, POST]'));
    await waitFor('the reloaded policy to allow POST', async () => {
      const res = await check(client, post);
      return res.http_response === 'ok_response';
    });
    console.log('ok - reloaded policy takes effect');
    client.close();

    // The same service on a unix: socket.
    const sock = path.join(dir, 'authz.sock');
    const unixServer = startServer(`unix:${sock}`);
    cleanup.push(() => unixServer.child.kill('SIGTERM'));
    const unixAddress = await unixServer.address;
    const unixClient = new Authorization(unixAddress, grpc.credentials.createInsecure());
    await expectDecision(unixClient, 'unix socket listener', {
      source: peer('10.0.0.1', 40000, 'spiffe://cluster.local/ns/a/sa/reader'),
      destination: { ...dest, labels }, request: http('GET', '/api/x'),
    }, { allowed: true });
    unixClient.close();
  } finally {
    for (const f of cleanup) f();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => {
  console.log('ext_authz interop: all checks passed');
  process.exit(0);
}, (err) => {
  console.error(`FAIL: ${err.stack || err}`);
  process.exit(1);
});
