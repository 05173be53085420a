#!/usr/bin/env node
// Interop: the SPIFFE Workload API of a real `meshid agent --mode node` (fed by a real
// `meshid server`), with a client nobody here wrote: Node's @grpc/grpc-js with
// @grpc/proto-loader loading the specification's proto (tests/interop/spiffe/workload.proto, not
// meshid's api/ tree), run as the user nobody (runuser), so that the agent attests a process
// that really is nobody's. FetchX509SVID gives nobody the SVID of its unix:user:nobody entry
// (checked with Node's own X.509 code: the URI SAN, the chain to the bundle, the PKCS#8 key), a
// call without the workload.spiffe.io header is INVALID_ARGUMENT, a user without an entry gets
// PERMISSION_DENIED, and FetchX509Bundles gives the CA's root keyed spiffe://cluster.local.
// The agent's SDS socket in node mode (Envoy's sds.proto, as a proxy without a token would
// use it): nobody's token-free stream gets its attested identity, daemon's (no entry) gets
// PERMISSION_DENIED and never the agent's own identity, and a stream with a workload token gets
// the token's identity whoever opens it.
//
// Usage: node workload_api.js --meshid <path to meshid binary>   (as root: runuser)
// The same file is the client: node workload_api.js --client svid|bundles|sds --socket TARGET
//   [--no-header] [--token JWT]
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const SPEC_PROTO = path.join(__dirname, '..', 'spiffe', 'workload.proto');

// ---------------------------------------------------------------------------------------------
// The client (runs as nobody): the first message or the final status as one JSON line.

function arg(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function runClient() {
  const definition = protoLoader.loadSync(SPEC_PROTO, {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
  });
  const api = grpc.loadPackageDefinition(definition);
  // The specification's proto has no package: the service is at the top level.
  const client = new api.SpiffeWorkloadAPI(arg('--socket'), grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (!process.argv.includes('--no-header')) metadata.add('workload.spiffe.io', 'true');
  const method = { svid: 'FetchX509SVID', bundles: 'FetchX509Bundles' }[arg('--client')];
  const call = client[method]({}, metadata, { deadline: Date.now() + 20000 });
  let done = false;
  const emit = (obj) => {
    if (done) return;
    done = true;
    process.stdout.write(`${JSON.stringify(obj)}\n`, () => process.exit(0));
  };
  const b64 = (b) => Buffer.from(b).toString('base64');
  call.on('data', (m) => {
    if (method === 'FetchX509SVID') {
      emit({ message: { svids: m.svids.map((s) => ({ spiffe_id: s.spiffe_id, x509_svid: b64(s.x509_svid),
        x509_svid_key: b64(s.x509_svid_key), bundle: b64(s.bundle) })), crl: m.crl.map(b64) } });
    } else {
      emit({ message: { bundles: Object.fromEntries(Object.entries(m.bundles).map(([k, v]) => [k, b64(v)])),
        crl: m.crl.map(b64) } });
    }
    call.cancel();
  });
  call.on('error', (e) => {
    const name = Object.keys(grpc.status).find((k) => grpc.status[k] === e.code);
    emit({ status: name, details: e.details });
  });
  call.on('end', () => emit({ status: 'OK', details: 'the stream ended without a message' }));
}

// SDS: one StreamSecrets for "default"; the first answer's URI SAN, or the final status.
function runSdsClient() {
  const { X509Certificate } = require('node:crypto');
  const { sdsClient } = require('./sds_protos.js');
  const { md, request, secretsByName } = require('./sds_harness.js');
  const call = sdsClient(arg('--socket')).StreamSecrets(md(arg('--token')), { deadline: Date.now() + 20000 });
  let done = false;
  const emit = (obj) => {
    if (done) return;
    done = true;
    process.stdout.write(`${JSON.stringify(obj)}\n`, () => process.exit(0));
  };
  call.on('data', (response) => {
    const secret = secretsByName(response).default;
    const chain = secret.tls_certificate.certificate_chain.inline_bytes.toString();
    emit({ message: { uri: new X509Certificate(chain).subjectAltName } });
    call.cancel();
  });
  call.on('error', (e) => {
    const name = Object.keys(grpc.status).find((k) => grpc.status[k] === e.code);
    emit({ status: name, details: e.details });
  });
  call.on('end', () => emit({ status: 'OK', details: 'the stream ended without a message' }));
  call.write(request(['default']));
}

if (process.argv.includes('--client')) {
  if (arg('--client') === 'sds') runSdsClient();
  else runClient();
} else {
  runTests();
}

// ---------------------------------------------------------------------------------------------
// The test (runs as root)

function runTests() {
  const { describe, it, before, after } = require('node:test');
  const assert = require('node:assert/strict');
  const { execFileSync, spawn } = require('node:child_process');
  const crypto = require('node:crypto');
  const fs = require('node:fs');
  const { GUARD_MS, meshidBinary, start, startAgent, waitForLog, stop, splitPem } = require('./sds_harness.js');

  if (process.getuid() !== 0) {
    const need = 'root (runuser, to run the Workload API client as the user nobody)';
    if (process.env.MESHID_REQUIRE_ALL_TESTS === '1') {
      console.log(`missing dependency: ${need}; MESHID_REQUIRE_ALL_TESTS=1, so this test fails instead of skipping`);
      process.exit(1);
    }
    console.log(`missing dependency: ${need}; test skipped (MESHID_REQUIRE_ALL_TESTS=1 would fail it)`);
    process.exit(77);
  }

  const MESHID = path.resolve(meshidBinary());
  const AGENT_ID = 'spiffe://cluster.local/ns/istio-system/sa/agent';  // startAgent's token
  const NOBODY_ID = 'spiffe://cluster.local/ns/wl/sa/nobody-node-client';
  const TRUST_DOMAIN = 'spiffe://cluster.local';

  // This directory (with node_modules) and the specification's proto, copied where every user
  // can read them: the checkout may be where only root can (a clone under /root, a CI job's 0700
  // temporary directory).
  let clientDir;
  function copyClient(dir) {
    clientDir = path.join(dir, 'client', 'node');
    fs.cpSync(__dirname, clientDir, { recursive: true });
    fs.cpSync(path.dirname(SPEC_PROTO), path.join(dir, 'client', 'spiffe'), { recursive: true });
    for (const d of [path.join(dir, 'client'), clientDir]) fs.chmodSync(d, 0o755);
  }

  // The client as `user`, from the copy: resolves with its JSON line.
  function asUser(user, target, method, { noHeader = false, token = undefined } = {}) {
    return new Promise((resolve, reject) => {
      const script = path.join(clientDir, path.basename(__filename));
      const args = ['-u', user, '--', process.execPath, script, '--client', method, '--socket', target];
      if (noHeader) args.push('--no-header');
      if (token) args.push('--token', token);
      const child = spawn('runuser', args, { cwd: clientDir, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { err += d; });
      const timer = setTimeout(() => { child.kill('SIGKILL'); }, GUARD_MS);
      child.on('exit', (code) => {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(out.trim().split('\n').pop()));
        } catch (e) {
          reject(new Error(`client as ${user} (exit ${code}): ${out}${err}`));
        }
      });
    });
  }

  // Concatenated DER certificates, split by their outer SEQUENCE lengths.
  function splitDer(buf) {
    const out = [];
    let i = 0;
    while (i < buf.length) {
      assert.equal(buf[i], 0x30, 'a DER SEQUENCE');
      let len = buf[i + 1];
      let start = i + 2;
      if (len & 0x80) {
        const n = len & 0x7f;
        len = 0;
        for (let k = 0; k < n; k++) len = len * 256 + buf[i + 2 + k];
        start += n;
      }
      out.push(buf.subarray(i, start + len));
      i = start + len;
    }
    return out;
  }

  describe('SPIFFE Workload API of meshid agent (grpc-js + the specification\'s proto, as nobody)', () => {
    let dir, data, server, agent, target, sdsTarget, roots;

    before(async () => {
      dir = fs.mkdtempSync('/tmp/meshid-wl-node-');  // short: Unix socket paths
      fs.chmodSync(dir, 0o755);  // nobody reaches the socket
      copyClient(dir);
      data = path.join(dir, 'data');
      const serverLog = path.join(dir, 'server.log');
      server = start(MESHID, ['server', '--data-dir', data, '--listen', '127.0.0.1:0', '--monitoring-addr',
        '127.0.0.1:0'], serverLog);
      const [, caPort] = await waitForLog(serverLog, /listening on 127\.0\.0\.1:(\d+)/, server);
      const apiSocket = path.join(dir, 'api.sock');
      target = `unix://${apiSocket}`;
      sdsTarget = `unix:${path.join(dir, 'sds.sock')}`;
      ({ agent } = await startAgent(MESHID, { dir, data, caPort, socket: path.join(dir, 'sds.sock'),
        args: ['--mode', 'node', '--workload-api-socket', target] }));
      await waitForLog(path.join(dir, 'agent.log'), /Workload API on (\S+)/, agent);
      execFileSync(MESHID, ['entry', 'create', '--data-dir', data, '--spiffe-id', NOBODY_ID, '--parent', AGENT_ID,
        '--selector', 'unix:user:nobody']);
      roots = splitPem(fs.readFileSync(path.join(data, 'root-cert.pem'), 'utf8')).map((p) => new crypto.X509Certificate(p));
    });

    after(async () => {
      if (agent) await stop(agent);
      if (server) await stop(server);
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it('FetchX509SVID as nobody: the SVID of its entry, exactly that URI SAN, chain to the bundle, PKCS#8 key',
      async () => {
        // The entry travels from the store to the agent first: ask again until it is there.
        const deadline = Date.now() + GUARD_MS;
        let got;
        for (;;) {
          got = await asUser('nobody', target, 'svid');
          if (got.message || Date.now() > deadline) break;
          assert.equal(got.status, 'PERMISSION_DENIED', `before the entry arrives: ${JSON.stringify(got)}`);
          await new Promise((r) => setTimeout(r, 200));
        }
        assert.ok(got.message, `no SVID: ${JSON.stringify(got)}`);
        const svids = got.message.svids;
        assert.deepEqual(svids.map((s) => s.spiffe_id), [NOBODY_ID]);
        const chain = splitDer(Buffer.from(svids[0].x509_svid, 'base64')).map((d) => new crypto.X509Certificate(d));
        const leaf = chain[0];
        assert.equal(leaf.subjectAltName, `URI:${NOBODY_ID}`);
        assert.equal(leaf.ca, false);
        let top = leaf;
        for (const next of chain.slice(1)) {
          assert.ok(top.verify(next.publicKey), 'chain element signed by the next one');
          top = next;
        }
        const bundle = splitDer(Buffer.from(svids[0].bundle, 'base64')).map((d) => new crypto.X509Certificate(d));
        assert.deepEqual(bundle.map((c) => c.fingerprint256), roots.map((c) => c.fingerprint256),
          'the bundle is the CA\'s root-cert.pem');
        assert.ok(bundle.some((r) => top.checkIssued(r) && top.verify(r.publicKey)), 'the chain validates to the bundle');
        const key = crypto.createPrivateKey({ key: Buffer.from(svids[0].x509_svid_key, 'base64'), format: 'der',
          type: 'pkcs8' });
        assert.ok(leaf.checkPrivateKey(key), 'the PKCS#8 key matches the leaf');
      });

    it('without the workload.spiffe.io header: INVALID_ARGUMENT', async () => {
      for (const method of ['svid', 'bundles']) {
        const got = await asUser('nobody', target, method, { noHeader: true });
        assert.equal(got.status, 'INVALID_ARGUMENT', `${method}: ${JSON.stringify(got)}`);
      }
    });

    it('a user no entry selects (daemon): PERMISSION_DENIED', async () => {
      const got = await asUser('daemon', target, 'svid');
      assert.equal(got.status, 'PERMISSION_DENIED', JSON.stringify(got));
      assert.equal(got.details, 'no identity issued');
    });

    it('FetchX509Bundles as nobody: the CA\'s root keyed spiffe://cluster.local', async () => {
      const got = await asUser('nobody', target, 'bundles');
      assert.ok(got.message, `no bundles: ${JSON.stringify(got)}`);
      assert.deepEqual(Object.keys(got.message.bundles), [TRUST_DOMAIN]);
      const bundle = splitDer(Buffer.from(got.message.bundles[TRUST_DOMAIN], 'base64'))
        .map((d) => new crypto.X509Certificate(d));
      assert.deepEqual(bundle.map((c) => c.fingerprint256), roots.map((c) => c.fingerprint256));
    });

    it('node-mode SDS without a token: nobody gets its attested identity, daemon gets nothing', async () => {
      // After the FetchX509SVID case above, nobody's entry has reached the agent.
      const nobody = await asUser('nobody', sdsTarget, 'sds');
      assert.deepEqual(nobody, { message: { uri: `URI:${NOBODY_ID}` } });
      const daemon = await asUser('daemon', sdsTarget, 'sds');
      assert.equal(daemon.status, 'PERMISSION_DENIED', `never the agent's own identity: ${JSON.stringify(daemon)}`);
      assert.match(daemon.details, /no identity issued/);
    });

    it('node-mode SDS with a workload token: the token\'s identity, whoever opens the stream', async () => {
      const token = execFileSync(MESHID, ['token', 'create', '--data-dir', data, '--namespace', 'wl',
        '--service-account', 'with-token']).toString().trim();
      for (const user of ['daemon', 'nobody']) {
        const got = await asUser(user, sdsTarget, 'sds', { token });
        assert.deepEqual(got, { message: { uri: 'URI:spiffe://cluster.local/ns/wl/sa/with-token' } }, user);
      }
    });
  });
}
