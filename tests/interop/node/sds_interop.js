#!/usr/bin/env node
// Interop: `meshid agent` (fed by a real `meshid server`) driven by a client nobody here wrote:
// Node's @grpc/grpc-js loading Envoy's own envoy/service/secret/v3/sds.proto from
// @grpc/grpc-js-xds. Checks StreamSecrets (subscribe, ACK, rotation push, NACK, unknown name,
// reconnect, per-stream workload identity), FetchSecrets and DeltaSecrets, and the agent's
// monitoring endpoint. Certificates are checked with Node's own X.509 code: the chain validates
// to ROOTCA, the key matches, the SPIFFE ID is the expected one.
//
// Usage: node sds_interop.js --meshid <path to meshid binary>
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const { SECRET_TYPE_URL, sdsClient, decodeSecret } = require('./sds_protos.js');
const {
  meshidBinary, start, startAgent, waitForLog, stop, httpGet, Reader, md, request, secretsByName, splitPem, checkWorkloadSecret,
  rootsOf,
} = require('./sds_harness.js');

const MESHID = meshidBinary();
const SECRET_TTL_SECONDS = 6;  // short, so rotations happen during the test
const AGENT_ID = 'spiffe://cluster.local/ns/istio-system/sa/agent';
const WEB_ID = 'spiffe://cluster.local/ns/default/sa/web';

describe('meshid agent over Envoy SDS v3 (grpc-js + Envoy protos)', () => {
  let dir, server, agent, socket, monitoringPort, client, webToken, anchors;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-sds-node-'));
    const data = path.join(dir, 'data');
    const serverLog = path.join(dir, 'server.log');
    server = start(MESHID, ['server', '--data-dir', data, '--listen', '127.0.0.1:0', '--monitoring-addr', '127.0.0.1:0'],
      serverLog);
    const [, caPort] = await waitForLog(serverLog, /listening on 127\.0\.0\.1:(\d+)/, server);
    const token = (ns, sa) => execFileSync(MESHID, ['token', 'create', '--data-dir', data, '--namespace', ns,
      '--service-account', sa]).toString().trim();
    webToken = token('default', 'web');

    anchors = path.join(dir, 'anchors.pem');
    fs.writeFileSync(anchors, '');
    socket = path.join(dir, 'var/run/secrets/workload-spiffe-uds/socket');
    ({ agent, monitoringPort } = await startAgent(MESHID, { dir, data, caPort, socket,
      args: ['--secret-ttl', `${SECRET_TTL_SECONDS}s`, '--grace-ratio', '0.5', '--grace-ratio-jitter', '0',
        '--trust-anchors', anchors] }));
    client = sdsClient(`unix:${socket}`);
  });

  after(async () => {
    if (client) client.close();
    if (agent) {
      assert.equal(await stop(agent), 0, 'agent exits cleanly on SIGTERM');
      assert.ok(!fs.existsSync(socket), 'agent removed its socket');
    }
    if (server) await stop(server);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('socket is private to the agent user', () => {
    const st = fs.statSync(socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
  });

  it('StreamSecrets: default + ROOTCA, ACK, and a rotation pushed without asking', async () => {
    const call = client.StreamSecrets();
    const reader = new Reader(call);
    call.write(request(['default', 'ROOTCA']));
    const got = {};
    let last;
    while (!got.default || !got.ROOTCA) {
      last = await reader.next('the initial secrets');
      assert.ok(last.nonce.length > 0, 'every response has a nonce');
      assert.ok(last.version_info.length > 0, 'every response has a version');
      Object.assign(got, secretsByName(last));
      call.write(request(['default', 'ROOTCA'], { version_info: last.version_info, response_nonce: last.nonce }));
    }
    const roots = rootsOf(got.ROOTCA);
    const leaf = checkWorkloadSecret(got.default, roots, AGENT_ID);
    const lifetime = (new Date(leaf.validTo) - new Date(leaf.validFrom)) / 1000;
    assert.ok(lifetime <= SECRET_TTL_SECONDS + 180, `asked for a ${SECRET_TTL_SECONDS}s certificate, got ${lifetime}s`);

    // Half-way through its life the certificate is renewed and pushed on this stream.
    const pushed = await reader.next('the rotated certificate');
    const secrets = secretsByName(pushed);
    assert.ok(secrets.default, 'the push carries the workload certificate');
    assert.notEqual(pushed.nonce, last.nonce);
    assert.notEqual(pushed.version_info, last.version_info);
    const rotated = checkWorkloadSecret(secrets.default, roots, AGENT_ID);
    assert.notEqual(rotated.serialNumber, leaf.serialNumber, 'a new certificate');
    assert.notEqual(secrets.default.tls_certificate.private_key.inline_bytes.toString(),
      got.default.tls_certificate.private_key.inline_bytes.toString(), 'with a new key');
    call.end();
  });

  it('NACK: the rejected version is never resent; the next response is a newer one', async () => {
    const call = client.StreamSecrets();
    const reader = new Reader(call);
    call.write(request(['default']));
    const first = await reader.next();
    call.write(request(['default'], { response_nonce: first.nonce,
      error_detail: { code: 3, message: 'interop test rejects this secret' } }));
    const next = await reader.next('the next rotation');
    assert.notEqual(next.version_info, first.version_info, 'the NACKed version was not sent again');
    assert.ok(secretsByName(next).default);
    call.end();
    const metrics = await httpGet(monitoringPort, '/metrics');
    const nacks = metrics.body.match(/^meshid_agent_sds_nacks_total (\S+)$/m);
    assert.ok(nacks && Number(nacks[1]) >= 1, 'the NACK is counted');
  });

  it('an unknown resource name is an error, not a substitute', async () => {
    const call = client.StreamSecrets();
    const reader = new Reader(call);
    call.write(request(['file-cert:/etc/certs/cert.pem~/etc/certs/key.pem']));
    const err = await reader.failure();
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.match(err.details, /file-cert:\/etc\/certs\/cert\.pem/);
  });

  it('reconnect: a new stream is a new subscription and is answered in full', async () => {
    const call1 = client.StreamSecrets();
    const r1 = new Reader(call1);
    call1.write(request(['ROOTCA']));
    const before = await r1.next();
    call1.cancel();
    const call2 = client.StreamSecrets();
    const r2 = new Reader(call2);
    call2.write(request(['ROOTCA'], { version_info: before.version_info }));  // what it had
    const again = await r2.next('the answer to the reconnected stream');
    assert.ok(secretsByName(again).ROOTCA);
    assert.notEqual(again.nonce, before.nonce, 'nonces do not survive reconnects');
    call2.end();
  });

  it('a workload token on the stream gives that workload its own identity, shared by its streams', async () => {
    const streams = [0, 1].map(() => {
      const call = client.StreamSecrets(md(webToken));
      const reader = new Reader(call);
      call.write(request(['default', 'ROOTCA']));
      return { call, reader };
    });
    const leaves = [];
    for (const { call, reader } of streams) {
      const got = {};
      while (!got.default || !got.ROOTCA) {
        const r = await reader.next();
        Object.assign(got, secretsByName(r));
        call.write(request(['default', 'ROOTCA'], { version_info: r.version_info, response_nonce: r.nonce }));
      }
      leaves.push(checkWorkloadSecret(got.default, rootsOf(got.ROOTCA), WEB_ID));
    }
    // Both streams were served the one cached secret of that identity (unless a rotation fell
    // between them, in which case the second has the newer one: both still valid and correct).
    assert.ok(leaves[0].serialNumber === leaves[1].serialNumber ||
      new Date(leaves[1].validTo) > new Date(leaves[0].validTo));
    for (const { call } of streams) call.end();

    const bad = client.StreamSecrets(md('not-a-token'));
    const reader = new Reader(bad);
    bad.write(request(['default']));
    const err = await reader.failure();
    assert.equal(err.code, grpc.status.UNAUTHENTICATED);
  });

  it('FetchSecrets returns the requested secrets and refuses unknown names', async () => {
    const response = await new Promise((resolve, reject) => {
      client.FetchSecrets(request(['default', 'ROOTCA']), (err, res) => (err ? reject(err) : resolve(res)));
    });
    const got = secretsByName(response);
    checkWorkloadSecret(got.default, rootsOf(got.ROOTCA), AGENT_ID);
    const err = await new Promise((resolve) => {
      client.FetchSecrets(request(['spiffe://cluster.local/ns/x/sa/y']), (e) => resolve(e));
    });
    assert.equal(err.code, grpc.status.NOT_FOUND);
  });

  it('DeltaSecrets: subscribe, unknown names removed, ACK, and the rotation pushed', async () => {
    const call = client.DeltaSecrets();
    const reader = new Reader(call);
    call.write({ node: { id: 'delta-node' }, type_url: SECRET_TYPE_URL,
      resource_names_subscribe: ['default', 'ROOTCA', 'bogus'] });
    const got = {};
    const versions = {};
    let removed = [];
    while (!got.default || !got.ROOTCA || removed.length === 0) {
      const r = await reader.next('the delta response');
      assert.ok(r.nonce.length > 0);
      for (const res of r.resources) {
        const s = decodeSecret(res.resource);
        assert.equal(s.name, res.name);
        assert.ok(res.version.length > 0, 'each resource carries its version');
        got[res.name] = s;
        versions[res.name] = res.version;
      }
      removed = removed.concat(r.removed_resources);
      call.write({ type_url: SECRET_TYPE_URL, response_nonce: r.nonce });
    }
    assert.deepEqual(removed, ['bogus']);
    checkWorkloadSecret(got.default, rootsOf(got.ROOTCA), AGENT_ID);
    const push = await reader.next('the delta rotation');
    assert.deepEqual(push.resources.map((r) => r.name), ['default'], 'only the changed resource is sent');
    assert.notEqual(push.resources[0].version, versions.default);
    call.end();
  });

  it('a new trust anchor is pushed to ROOTCA streams without the proxy asking', async () => {
    const call = client.StreamSecrets();
    const reader = new Reader(call);
    call.write(request(['ROOTCA']));
    const first = await reader.next();
    const before = splitPem(rootsOf(secretsByName(first).ROOTCA));
    call.write(request(['ROOTCA'], { version_info: first.version_info, response_nonce: first.nonce }));
    // A root the operator is rolling in (made with the openssl CLI), added to --trust-anchors.
    const key = path.join(dir, 'new-root.key');
    const cert = path.join(dir, 'new-root.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', cert, '-days', '30', '-subj', '/O=cluster.local next root',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    { stdio: 'ignore' });
    fs.writeFileSync(anchors, fs.readFileSync(cert));
    const pushed = await reader.next('the ROOTCA push after the anchors file changed');
    const after = splitPem(rootsOf(secretsByName(pushed).ROOTCA));
    assert.equal(after.length, before.length + 1);
    const added = new crypto.X509Certificate(fs.readFileSync(cert));
    assert.ok(after.some((p) => new crypto.X509Certificate(p).fingerprint256 === added.fingerprint256));
    for (const p of before) assert.ok(after.includes(p), 'the old roots stay');
    call.end();
  });

  it('monitoring: /healthz, /readyz and the agent metrics', async () => {
    assert.equal((await httpGet(monitoringPort, '/healthz')).status, 200);
    assert.equal((await httpGet(monitoringPort, '/readyz')).status, 200);
    const { body } = await httpGet(monitoringPort, '/metrics');
    for (const name of ['meshid_agent_sds_streams', 'meshid_agent_sds_pushes_total', 'meshid_agent_sds_acks_total',
      'meshid_agent_sds_nacks_total', 'meshid_agent_csr_requests_total', 'meshid_agent_cert_expiry_seconds',
      'meshid_agent_cached_secrets']) {
      assert.match(body, new RegExp(`^${name}[ {]`, 'm'), `${name} is exported`);
    }
    const expiry = Number(body.match(/^meshid_agent_cert_expiry_seconds (\S+)$/m)[1]);
    assert.ok(expiry > 0 && expiry <= SECRET_TTL_SECONDS, `earliest expiry in ${expiry}s`);
    const csrs = Number(body.match(/^meshid_agent_csr_requests_total (\S+)$/m)[1]);
    assert.ok(csrs >= 3, 'the agent identity, its rotations and the workload identity were requested');
  });
});
