#!/usr/bin/env node
// Integration: the agent through a CA outage, with the real binaries and Envoy's sds.proto.
// While `meshid server` is down the agent keeps serving its cached certificate (and renewal
// fails quietly with backoff); once that certificate has expired, streams get an error instead
// of a stale secret; when the CA is back, a reconnecting proxy gets a fresh certificate at once.
//
// Usage: node agent_ca_outage.js --meshid <path to meshid binary>
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const { sdsClient } = require('./sds_protos.js');
const {
  meshidBinary, start, startAgent, waitForLog, stop, httpGet, Reader, request, secretsByName, checkWorkloadSecret, rootsOf,
} = require('./sds_harness.js');

const MESHID = meshidBinary();
const AGENT_ID = 'spiffe://cluster.local/ns/istio-system/sa/agent';

describe('meshid agent while the CA is unreachable', () => {
  let dir, data, caPort, server, agent, socket, monitoringPort, client;

  async function startServer(port) {
    const log = path.join(dir, `server-${Date.now()}.log`);
    server = start(MESHID, ['server', '--data-dir', data, '--listen', `127.0.0.1:${port}`,
      '--monitoring-addr', '127.0.0.1:0'], log);
    return Number((await waitForLog(log, /listening on 127\.0\.0\.1:(\d+)/, server))[1]);
  }

  async function fetchDefault() {
    const call = client.StreamSecrets();
    const reader = new Reader(call);
    call.write(request(['default', 'ROOTCA']));
    const got = {};
    while (!got.default || !got.ROOTCA) {
      const r = await reader.next();
      Object.assign(got, secretsByName(r));
      call.write(request(['default', 'ROOTCA'], { version_info: r.version_info, response_nonce: r.nonce }));
    }
    return { call, reader, leaf: checkWorkloadSecret(got.default, rootsOf(got.ROOTCA), AGENT_ID) };
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-agent-outage-'));
    data = path.join(dir, 'data');
    caPort = await startServer(0);
    socket = path.join(dir, 'uds/socket');
    ({ agent, monitoringPort } = await startAgent(MESHID, { dir, data, caPort, socket,
      args: ['--secret-ttl', '5s', '--grace-ratio-jitter', '0'] }));
    client = sdsClient(`unix:${socket}`);
  });

  after(async () => {
    if (client) client.close();
    if (agent) assert.equal(await stop(agent), 0);
    if (server) await stop(server);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves the cached certificate, then an error after expiry, then recovers', async () => {
    const first = await fetchDefault();
    await stop(server);

    // CA down: a new stream still gets the cached certificate while it is valid.
    const again = await fetchDefault();
    const stillValid = new Date(first.leaf.validTo) > new Date();
    if (stillValid) assert.equal(again.leaf.serialNumber, first.leaf.serialNumber);
    again.call.cancel();

    // At expiry the open stream is closed with an error rather than left with a stale secret.
    const err = await first.reader.failure();
    assert.equal(err.code, grpc.status.UNAVAILABLE);
    assert.match(err.details, /expired/);
    assert.ok(new Date() >= new Date(first.leaf.validTo), 'the error came once the certificate had expired');
    assert.equal((await httpGet(monitoringPort, '/readyz')).status, 503);
    assert.equal((await httpGet(monitoringPort, '/healthz')).status, 200, 'still alive: restarting would not help');
    const metrics = (await httpGet(monitoringPort, '/metrics')).body;
    assert.match(metrics, /^meshid_agent_csr_failures_total\{code="UNAVAILABLE"\} [1-9]/m);

    // The CA comes back on the same address; a proxy reconnecting (with its own backoff, as
    // Envoy does) triggers a new request and gets a fresh certificate.
    await startServer(caPort);
    let recovered = null;
    for (let attempt = 0; recovered === null; attempt++) {
      try {
        recovered = await fetchDefault();
      } catch (e) {
        if (e.code !== grpc.status.UNAVAILABLE || attempt >= 20) throw e;
        await new Promise((r) => setTimeout(r, 250 * Math.min(attempt + 1, 4)));
      }
    }
    assert.notEqual(recovered.leaf.serialNumber, first.leaf.serialNumber);
    recovered.call.end();
    assert.equal((await httpGet(monitoringPort, '/readyz')).status, 200);
  });
});
