#!/usr/bin/env node
// Integration: revocation reaching the proxy, with the real binaries and Envoy's sds.proto. A
// real `meshid server` and `meshid agent`; a workload's StreamSecrets for "default" and "ROOTCA".
// ROOTCA carries the server's CRL (validation_context.crl, only_verify_leaf_cert_crl). Once the
// workload's certificate is revoked with `meshid certs revoke`, the same stream must get a new
// ROOTCA whose CRL lists it, and a new "default" with a certificate that is not revoked. The CRLs
// are checked with the openssl CLI: signed by the root ROOTCA trusts, listing the serial with its
// reason, and making `openssl verify -crl_check` refuse the revoked leaf and accept the new one.
//
// Usage: node sds_crl.js --meshid <path to meshid binary>
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { sdsClient } = require('./sds_protos.js');
const {
  GUARD_MS, meshidBinary, start, startAgent, waitForLog, stop, httpGet, Reader, md, request, secretsByName, splitPem,
  checkWorkloadSecret, rootsOf,
} = require('./sds_harness.js');

const MESHID = meshidBinary();
const WEB_ID = 'spiffe://cluster.local/ns/default/sa/web';
const NAMES = ['default', 'ROOTCA'];
const CRL_PEM = /^-----BEGIN X509 CRL-----\r?\n[\s\S]+\r?\n-----END X509 CRL-----\r?\n?$/;

// Runs the openssl CLI; returns { status, out } with stdout and stderr together (openssl 3
// prints "verify OK" and verification errors on stderr).
function openssl(args) {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

// The CRL of a ROOTCA secret, checked for the form Envoy expects.
function crlOf(secret) {
  assert.equal(secret.type, 'validation_context');
  const vc = secret.validation_context;
  assert.ok(vc.crl, 'ROOTCA carries a CRL');
  const pem = vc.crl.inline_bytes.toString();
  assert.match(pem, CRL_PEM, 'the CRL is one PEM "X509 CRL"');
  assert.equal(vc.only_verify_leaf_cert_crl, true, 'only_verify_leaf_cert_crl is set');
  return pem;
}

// Promise.race against what is left of `deadline`.
function withDeadline(deadline, promise, what) {
  let timer;
  const left = deadline - Date.now();
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${GUARD_MS} ms`)), Math.max(left, 0));
    }),
  ]).finally(() => clearTimeout(timer));
}

describe('meshid agent puts the server CRL into SDS ROOTCA', () => {
  let dir, data, server, agent, socket, monitoringPort, client, call, webToken, crlFile;
  let n = 0;
  const file = (name, text) => {
    const p = path.join(dir, `${++n}-${name}`);
    fs.writeFileSync(p, text);
    return p;
  };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-sds-crl-'));
    data = path.join(dir, 'data');
    const serverLog = path.join(dir, 'server.log');
    server = start(MESHID, ['server', '--data-dir', data, '--listen', '127.0.0.1:0', '--monitoring-addr', '127.0.0.1:0'],
      serverLog);
    const caPort = Number((await waitForLog(serverLog, /listening on 127\.0\.0\.1:(\d+)/, server))[1]);
    webToken = execFileSync(MESHID, ['token', 'create', '--data-dir', data, '--namespace', 'default',
      '--service-account', 'web', '--ttl', '1h']).toString().trim();
    socket = path.join(dir, 'uds/socket');
    crlFile = path.join(dir, 'agent-state/crl.pem');
    // The default (long) certificate lifetime: any new "default" during the test is the
    // replacement of a revoked certificate, not a scheduled renewal.
    ({ agent, monitoringPort } = await startAgent(MESHID, { dir, data, caPort, socket, args: ['--crl-file', crlFile] }));

    // The agent serves SDS before its revocation stream has delivered the first CRL; wait for
    // it (as a proxy started once the node is settled would), so ROOTCA's first version is
    // expected to carry one.
    const deadline = Date.now() + GUARD_MS;
    for (;;) {
      const m = (await httpGet(monitoringPort, '/metrics')).body.match(/^meshid_agent_crl_number (\S+)$/m);
      if (m && Number(m[1]) >= 1) break;
      assert.ok(Date.now() < deadline, `the agent had no CRL within ${GUARD_MS} ms (meshid_agent_crl_number ${m && m[1]})`);
      await new Promise((r) => setTimeout(r, 100));
    }
    client = sdsClient(`unix:${socket}`);
  });

  after(async () => {
    if (call) call.cancel();
    if (client) client.close();
    // Everything is stopped and removed before the exit codes are checked.
    const agentCode = agent ? await stop(agent) : 0;
    const serverCode = server ? await stop(server) : 0;
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(agentCode, 0, 'agent exits cleanly on SIGTERM');
    assert.equal(serverCode, 0, 'server exits cleanly on SIGTERM');
  });

  it('a revoked workload certificate is listed in the next ROOTCA CRL and replaced', async () => {
    call = client.StreamSecrets(md(webToken));
    const reader = new Reader(call);
    call.write(request(NAMES));

    let firstRoot = null;  // the first ROOTCA secret served
    let rootsPem = null;   // ROOTCA trusted_ca the client holds
    let crlPem = null;     // ROOTCA crl the client holds
    let current = null;    // { secret, leaf } of the "default" the client holds
    const served = [];     // every "default" leaf served, in order

    // Reads one response, ACKs it as Envoy would (version and nonce back), applies it.
    async function readOne(deadline, what) {
      const r = await withDeadline(deadline, reader.next(what), what);
      assert.ok(r.nonce.length > 0 && r.version_info.length > 0, 'the response has a nonce and a version');
      call.write(request(NAMES, { version_info: r.version_info, response_nonce: r.nonce }));
      const got = secretsByName(r);
      for (const name of Object.keys(got)) assert.ok(NAMES.includes(name), `unrequested secret ${name}`);
      if (got.ROOTCA) {
        if (firstRoot === null) firstRoot = got.ROOTCA;
        rootsPem = rootsOf(got.ROOTCA);
        crlPem = crlOf(got.ROOTCA);
      }
      if (got.default) {
        assert.ok(rootsPem, 'ROOTCA is served before "default" can be checked');
        const leaf = checkWorkloadSecret(got.default, rootsPem, WEB_ID);
        current = { secret: got.default, leaf };
        served.push(leaf);
      }
      return got;
    }

    // ---- Before: the first ROOTCA already carries the (signed, current) CRL.
    let deadline = Date.now() + GUARD_MS;
    while (!current || !rootsPem) await readOne(deadline, 'the initial secrets');
    crlOf(firstRoot);  // the first ROOTCA, not only a later one, has the CRL
    const roots0 = file('roots.pem', rootsPem);
    const crl0 = file('crl.pem', crlPem);
    const leafPem = current.leaf.toString();
    const leafFile = file('leaf.pem', leafPem);
    const chain = splitPem(current.secret.tls_certificate.certificate_chain.inline_bytes.toString());
    const untrusted = chain.length > 1 ? ['-untrusted', file('intermediates.pem', chain.slice(1).join('\n') + '\n')] : [];

    const serial = current.leaf.serialNumber;
    assert.match(serial, /^[0-9A-F]+$/, 'Node gives the serial in upper-case hex');
    // The serial as openssl prints it is the one meshid's ledger shows.
    assert.equal(openssl(['x509', '-in', leafFile, '-noout', '-serial']).out.trim(), `serial=${serial}`);
    const listed = execFileSync(MESHID, ['certs', 'list', '--data-dir', data, '--serial', serial, '--json'])
      .toString().trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.equal(listed.length, 1, `certs list --serial ${serial}: ${JSON.stringify(listed)}`);
    assert.equal(listed[0].serial, serial);
    assert.equal(listed[0].spiffe_id, WEB_ID);

    let r = openssl(['crl', '-in', crl0, '-CAfile', roots0, '-noout']);
    assert.equal(r.status, 0, `the first CRL verifies against ROOTCA's root:\n${r.out}`);
    assert.match(r.out, /verify OK/);
    const text0 = openssl(['crl', '-in', crl0, '-noout', '-text']);
    assert.equal(text0.status, 0, text0.out);
    assert.ok(!text0.out.includes(`Serial Number: ${serial}`), 'the fresh certificate is not in the first CRL');
    r = openssl(['verify', '-crl_check', '-CRLfile', crl0, '-CAfile', roots0, ...untrusted, leafFile]);
    assert.equal(r.status, 0, `openssl verify -crl_check accepts the leaf with the first CRL:\n${r.out}`);

    // ---- Revoke it.
    const out = execFileSync(MESHID, ['certs', 'revoke', serial, '--data-dir', data, '--reason', 'keyCompromise'])
      .toString();
    assert.match(out, new RegExp(`^revoked ${serial}$`, 'm'), `certs revoke said:\n${out}`);

    // ---- After: on the same stream, a ROOTCA whose CRL lists it, and a new "default".
    const revokedLeafCount = served.length;
    let revokingCrl = null;  // the first CRL served that lists the serial
    let replacement = null;
    deadline = Date.now() + GUARD_MS;
    while (!revokingCrl || !replacement) {
      const got = await readOne(deadline, 'a ROOTCA listing the revoked serial and a new "default"');
      if (got.ROOTCA && !revokingCrl) {
        const t = openssl(['crl', '-in', file('crl.pem', crlPem), '-noout', '-text']);
        assert.equal(t.status, 0, t.out);
        if (t.out.includes(`Serial Number: ${serial}`)) revokingCrl = { pem: crlPem, text: t.out };
      }
      if (got.default) {
        assert.notEqual(current.leaf.serialNumber, serial, 'the revoked certificate is not served again');
        replacement = current;
      }
    }
    assert.ok(served.length > revokedLeafCount);

    // The CRL lists the serial with the reason, is signed by the root, and revokes the old leaf.
    const entry = revokingCrl.text.slice(revokingCrl.text.indexOf(`Serial Number: ${serial}`) + 1)
      .split(/Serial Number:|\n\s*Signature Algorithm:/)[0];
    assert.match(entry, /Key Compromise/, `the entry carries the reason:\n${revokingCrl.text}`);
    const roots1 = file('roots.pem', rootsPem);
    const crl1 = file('crl.pem', revokingCrl.pem);
    r = openssl(['crl', '-in', crl1, '-CAfile', roots1, '-noout']);
    assert.equal(r.status, 0, `the new CRL verifies against ROOTCA's root:\n${r.out}`);
    assert.match(r.out, /verify OK/);
    r = openssl(['verify', '-crl_check', '-CRLfile', crl1, '-CAfile', roots1, ...untrusted, leafFile]);
    assert.notEqual(r.status, 0, `openssl verify -crl_check refuses the revoked leaf:\n${r.out}`);
    assert.match(r.out, /certificate revoked/);

    // The replacement: a different certificate, valid against the same CRL.
    const newLeafFile = file('new-leaf.pem', replacement.leaf.toString());
    const newChain = splitPem(replacement.secret.tls_certificate.certificate_chain.inline_bytes.toString());
    const newUntrusted = newChain.length > 1
      ? ['-untrusted', file('intermediates.pem', newChain.slice(1).join('\n') + '\n')] : [];
    r = openssl(['verify', '-crl_check', '-CRLfile', crl1, '-CAfile', roots1, ...newUntrusted, newLeafFile]);
    assert.equal(r.status, 0, `openssl verify -crl_check accepts the new leaf:\n${r.out}`);
    assert.match(r.out, /: OK/);
    // And against the CRL the client ends with (a later one, if any, still lists the old serial).
    const crlLast = file('crl.pem', crlPem);
    r = openssl(['verify', '-crl_check', '-CRLfile', crlLast, '-CAfile', roots1, ...newUntrusted, newLeafFile]);
    assert.equal(r.status, 0, `the new leaf is accepted with the last CRL too:\n${r.out}`);
    r = openssl(['verify', '-crl_check', '-CRLfile', crlLast, '-CAfile', roots1, ...untrusted, leafFile]);
    assert.match(r.out, /certificate revoked/, 'the last CRL still revokes the old leaf');

    // The agent kept the CRL it put in force in its --crl-file (the CRL first, then the issuer chain).
    const kept = fs.readFileSync(crlFile, 'utf8');
    const keptCrl = kept.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----\r?\n?/);
    assert.ok(keptCrl, `--crl-file holds a CRL:\n${kept}`);
    assert.match(openssl(['crl', '-in', file('kept-crl.pem', keptCrl[0]), '-noout', '-text']).out,
      new RegExp(`Serial Number: ${serial}`), 'the kept CRL lists the revoked serial');

    const metrics = (await httpGet(monitoringPort, '/metrics')).body;
    const replaced = metrics.match(/^meshid_agent_revoked_certificates_total (\S+)$/m);
    assert.ok(replaced && Number(replaced[1]) >= 1, `revoked certificate replacement counted: ${replaced && replaced[1]}`);
    const entries = metrics.match(/^meshid_agent_crl_entries (\S+)$/m);
    assert.ok(entries && Number(entries[1]) >= 1, `CRL entries: ${entries && entries[1]}`);
  });
});
