#!/usr/bin/env node
// Integration: root rotation, with the real binaries and Envoy's sds.proto. `meshid server`
// first signs with root A (Istio's plug-in layout, made with the openssl CLI); it is then
// restarted signing with root B, its trust bundle holding A and B. The agent must push a ROOTCA
// holding both roots before it serves any workload certificate issued under B, and A stays in
// ROOTCA so certificates from the old root keep validating.
//
// Usage: node agent_root_rotation.js --meshid <path to meshid binary>
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { sdsClient } = require('./sds_protos.js');
const {
  GUARD_MS, meshidBinary, start, startAgent, waitForLog, stop, httpGet, Reader, request, secretsByName, splitPem,
  checkWorkloadSecret, rootsOf,
} = require('./sds_harness.js');

const MESHID = meshidBinary();
const AGENT_ID = 'spiffe://cluster.local/ns/istio-system/sa/agent';
const NAMES = ['default', 'ROOTCA'];

// A self-signed ECDSA P-256 CA made with the openssl CLI; returns its PEM files.
function makeRoot(dir, name) {
  const conf = path.join(dir, `${name}.cnf`);
  fs.writeFileSync(conf, [
    '[req]', 'prompt = no', 'distinguished_name = dn', 'x509_extensions = ext',
    '[dn]', 'O = meshid test', `CN = ${name}`,
    '[ext]', 'basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign, cRLSign',
    'subjectKeyIdentifier = hash',
  ].join('\n') + '\n');
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.pem`);
  execFileSync('openssl', ['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '3650', '-config', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { key: fs.readFileSync(key, 'utf8'), pem: fs.readFileSync(cert, 'utf8') };
}

// Istio's plug-in layout with a root as the signing CA.
function writeCacerts(dir, signer, trustBundle) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'ca-key.pem'), signer.key, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'ca-cert.pem'), signer.pem);
  fs.writeFileSync(path.join(dir, 'cert-chain.pem'), signer.pem);
  fs.writeFileSync(path.join(dir, 'root-cert.pem'), trustBundle);
}

const fingerprints = (pem) => new Set(splitPem(pem).map((p) => new crypto.X509Certificate(p).fingerprint256));

describe('meshid agent through a root rotation', () => {
  let dir, data, caPort, server, agent, socket, monitoringPort, client, call;
  let rootA, rootB;

  async function startServer(cacerts, port) {
    const log = path.join(dir, `server-${path.basename(cacerts)}.log`);
    server = start(MESHID, ['server', '--cacerts-dir', cacerts, '--data-dir', data, '--listen', `127.0.0.1:${port}`,
      '--monitoring-addr', '127.0.0.1:0'], log);
    return Number((await waitForLog(log, /listening on 127\.0\.0\.1:(\d+)/, server))[1]);
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-root-rotation-'));
    data = path.join(dir, 'data');
    const a = makeRoot(dir, 'root-a');
    const b = makeRoot(dir, 'root-b');
    rootA = new crypto.X509Certificate(a.pem);
    rootB = new crypto.X509Certificate(b.pem);
    writeCacerts(path.join(dir, 'phase1'), a, a.pem);
    writeCacerts(path.join(dir, 'phase2'), b, a.pem + b.pem);  // a new root next to the old

    caPort = await startServer(path.join(dir, 'phase1'), 0);
    socket = path.join(dir, 'uds/socket');
    // The server rewrites data/root-cert.pem on start and the agent re-reads it before every
    // request, so it trusts the B-issued serving certificate after the restart.
    ({ agent, monitoringPort } = await startAgent(MESHID, { dir, data, caPort, socket,
      args: ['--secret-ttl', '6s', '--grace-ratio-jitter', '0'] }));
    client = sdsClient(`unix:${socket}`);
  });

  after(async () => {
    if (call) call.cancel();
    if (client) client.close();
    if (agent) assert.equal(await stop(agent), 0);
    if (server) await stop(server);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('pushes ROOTCA with both roots before a certificate from the new root, and keeps the old root', async () => {
    call = client.StreamSecrets();
    const reader = new Reader(call);
    call.write(request(NAMES));

    // Everything served, in arrival order: { roots: Set of fingerprints } for ROOTCA,
    // { secret, leaf, issuer: 'A' | 'B' } for default.
    const events = [];
    let rootsPem = null;  // the last ROOTCA the client applied
    const issuerOf = (leaf) => [['A', rootA], ['B', rootB]]
      .find(([, root]) => leaf.checkIssued(root) && leaf.verify(root.publicKey))?.[0];

    // Reads and ACKs responses until one serves an event `done` accepts; returns that event.
    async function readUntil(what, done) {
      const deadline = Date.now() + GUARD_MS;
      for (;;) {
        assert.ok(Date.now() < deadline, `no ${what} within ${GUARD_MS} ms`);
        const r = await reader.next(what);
        call.write(request(NAMES, { version_info: r.version_info, response_nonce: r.nonce }));
        const got = secretsByName(r);
        const batch = [];
        // Within one response ROOTCA is recorded first; the ordering check below still demands
        // the new ROOTCA in an earlier response than the first leaf from the new root.
        if (got.ROOTCA) {
          rootsPem = rootsOf(got.ROOTCA);
          batch.push({ roots: fingerprints(rootsPem), response: r.nonce });
        }
        if (got.default) {
          assert.ok(rootsPem, 'ROOTCA is served before default can be checked');
          const leaf = checkWorkloadSecret(got.default, rootsPem, AGENT_ID);
          batch.push({ secret: got.default, leaf, issuer: issuerOf(leaf), response: r.nonce });
        }
        events.push(...batch);
        const hit = batch.find(done);
        if (hit) return hit;
      }
    }

    // Phase 1: ROOTCA is exactly A, and the certificate chains to A.
    const first = await readUntil('the phase-1 certificate', (e) => e.leaf);
    assert.deepEqual(fingerprints(rootsPem), new Set([rootA.fingerprint256]), 'ROOTCA holds exactly root A');
    assert.equal(first.issuer, 'A');

    // Restart right after a renewal, so the next one (half the 6 s lifetime later) finds the new
    // CA up instead of backing off towards the certificate's expiry.
    const renewed = await readUntil('a renewal from A', (e) => e.leaf && e !== first);
    assert.equal(renewed.issuer, 'A');
    assert.equal(await stop(server), 0, 'server exits cleanly on SIGTERM');
    const phase2 = events.length;
    assert.equal(await startServer(path.join(dir, 'phase2'), caPort), caPort);
    const both = new Set([rootA.fingerprint256, rootB.fingerprint256]);
    assert.deepEqual(fingerprints(fs.readFileSync(path.join(data, 'root-cert.pem'), 'utf8')), both,
      'the server wrote the A+B trust bundle');

    const firstB = await readUntil('a certificate from root B', (e) => e.issuer === 'B');
    // One more renewal: installing B certificates must not drop A from ROOTCA.
    const lastB = await readUntil('a renewal from root B', (e) => e.leaf && e !== firstB);
    assert.equal(lastB.issuer, 'B');

    const bothPush = events.findIndex((e, i) => i >= phase2 && e.roots && e.roots.size === 2 &&
      [...both].every((f) => e.roots.has(f)));
    assert.ok(bothPush >= 0, 'a ROOTCA push holding both A and B arrived');
    assert.ok(bothPush < events.indexOf(firstB) && events[bothPush].response !== firstB.response,
      'ROOTCA with A and B came in a response before the first B certificate');
    // Replay what the client held: never a B certificate while its ROOTCA lacked B, and no
    // ROOTCA ever without A (workloads still holding A certificates keep validating).
    let held = null;
    events.forEach((e, i) => {
      if (e.roots) {
        held = e.roots;
        assert.ok(held.has(rootA.fingerprint256), `ROOTCA push (event ${i}) dropped root A`);
      } else {
        assert.ok(e.issuer, `certificate (event ${i}) is from neither A nor B`);
        if (e.issuer === 'B') assert.ok(held.has(rootB.fingerprint256), `B certificate (event ${i}) before ROOTCA had B`);
      }
    });
    assert.deepEqual(fingerprints(rootsPem), both, 'ROOTCA ends with A and B');
    checkWorkloadSecret(lastB.secret, rootsPem, AGENT_ID);

    const metrics = (await httpGet(monitoringPort, '/metrics')).body;
    const updates = metrics.match(/^meshid_agent_trust_bundle_updates_total (\d+)/m);
    assert.ok(updates && Number(updates[1]) >= 2, `trust bundle updates counted: ${updates && updates[1]}`);
  });
});
