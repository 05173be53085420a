// Shared by the agent's Node tests: running meshid processes, reading SDS streams, checking
// the certificates they deliver with Node's own X.509 code.
'use strict';

const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const { SECRET_TYPE_URL, decodeSecret } = require('./sds_protos.js');

const GUARD_MS = 30000;  // upper bound for anything we wait for (a failure, not a timing check)

function meshidBinary() {
  const i = process.argv.indexOf('--meshid');
  const bin = i >= 0 ? process.argv[i + 1] : process.env.MESHID_BINARY;
  if (!bin) {
    console.error(`usage: node ${path.basename(process.argv[1])} --meshid <path to meshid>`);
    process.exit(2);
  }
  return bin;
}

// ---------------------------------------------------------------------------------------------
// Processes

const children = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

function start(meshid, args, logFile) {
  const out = fs.openSync(logFile, 'w');
  const child = spawn(meshid, args, { stdio: ['ignore', out, out] });
  children.push(child);
  return child;
}

async function waitForLog(logFile, pattern, child) {
  const deadline = Date.now() + GUARD_MS;
  for (;;) {
    const text = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
    const m = text.match(pattern);
    if (m) return m;
    if (child.exitCode !== null) throw new Error(`${path.basename(logFile)}: process exited:\n${text}`);
    if (Date.now() > deadline) throw new Error(`${path.basename(logFile)}: no ${pattern} in:\n${text}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Starts `meshid agent` against the CA on `caPort` (trust bundle `<data>/root-cert.pem`) with a
// token of its own (istio-system/agent, from the CA's local issuer) written to `<dir>/agent.token`;
// `args` adds flags; the agent keeps its CRL in `<dir>/agent.crl.pem` and its pushed trust
// bundle in `<dir>/agent.trust-bundle.pem` unless they say otherwise.
// Resolves once it serves, with the process and its monitoring port.
async function startAgent(meshid, { dir, data, caPort, socket, args = [] }) {
  if (!args.includes('--crl-file')) args = ['--crl-file', path.join(dir, 'agent.crl.pem'), ...args];
  if (!args.includes('--trust-bundle-file')) args = ['--trust-bundle-file', path.join(dir, 'agent.trust-bundle.pem'), ...args];
  fs.writeFileSync(path.join(dir, 'agent.token'), execFileSync(meshid, ['token', 'create', '--data-dir', data,
    '--namespace', 'istio-system', '--service-account', 'agent', '--ttl', '1h']).toString().trim());
  const log = path.join(dir, 'agent.log');
  const agent = start(meshid, ['agent', '--ca-addr', `127.0.0.1:${caPort}`, '--ca-root', path.join(data, 'root-cert.pem'),
    '--token-file', path.join(dir, 'agent.token'), '--sds-socket', socket, '--monitoring-addr', '127.0.0.1:0', ...args], log);
  const monitoringPort = Number((await waitForLog(log, /monitoring on port (\d+)/, agent))[1]);
  return { agent, monitoringPort };
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

function httpGet(port, target) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: target }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    }).on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// Streams

// Queues a duplex call's messages so a test can await them one at a time.
class Reader {
  constructor(call) {
    this.call = call;
    this.messages = [];
    this.waiters = [];
    this.error = null;
    this.ended = false;
    call.on('data', (m) => { this.messages.push(m); this.flush(); });
    call.on('error', (e) => { this.error = e; this.flush(); });
    call.on('end', () => { this.ended = true; this.flush(); });
  }
  flush() {
    while (this.waiters.length > 0 && (this.messages.length > 0 || this.error || this.ended)) {
      const w = this.waiters.shift();
      if (this.messages.length > 0) w.resolve(this.messages.shift());
      else w.reject(this.error || new Error('stream ended'));
    }
  }
  next(what = 'a response') {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${GUARD_MS} ms`)), GUARD_MS);
      this.waiters.push({
        resolve: (m) => { clearTimeout(timer); resolve(m); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.flush();
    });
  }
  // The error the stream ends with.
  async failure() {
    for (;;) {
      try {
        await this.next('the stream error');
      } catch (e) {
        if (e.code === undefined) throw e;
        return e;
      }
    }
  }
}

function md(token) {
  const m = new grpc.Metadata();
  if (token) m.add('authorization', `Bearer ${token}`);
  return m;
}

function request(names, extra = {}) {
  return { node: { id: 'sidecar~10.1.2.3~web-1.default~default.svc.cluster.local' }, resource_names: names,
    type_url: SECRET_TYPE_URL, ...extra };
}

function secretsByName(response) {
  const out = {};
  for (const any of response.resources) {
    const s = decodeSecret(any);
    out[s.name] = s;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Certificates

function splitPem(text) {
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) || []);
}

// Checks a tls_certificate Secret against a ROOTCA bundle; returns the leaf.
function checkWorkloadSecret(secret, rootsPem, spiffeId) {
  assert.equal(secret.type, 'tls_certificate');
  const chainPem = secret.tls_certificate.certificate_chain.inline_bytes.toString();
  const keyPem = secret.tls_certificate.private_key.inline_bytes.toString();
  const chain = splitPem(chainPem).map((p) => new crypto.X509Certificate(p));
  assert.ok(chain.length >= 1, 'certificate_chain holds at least the leaf');
  const leaf = chain[0];
  assert.ok(leaf.checkPrivateKey(crypto.createPrivateKey(keyPem)), 'private key matches the leaf');
  let top = leaf;
  for (const next of chain.slice(1)) {
    assert.ok(top.verify(next.publicKey), 'chain element signed by the next one');
    top = next;
  }
  const roots = splitPem(rootsPem).map((p) => new crypto.X509Certificate(p));
  assert.ok(roots.length >= 1, 'ROOTCA holds at least one root');
  assert.ok(roots.some((r) => top.checkIssued(r) && top.verify(r.publicKey)), 'chain validates to a ROOTCA root');
  assert.equal(leaf.subjectAltName, `URI:${spiffeId}`);
  assert.equal(leaf.ca, false);
  const now = Date.now();
  assert.ok(new Date(leaf.validFrom).getTime() <= now && now < new Date(leaf.validTo).getTime(), 'leaf is valid now');
  return leaf;
}

function rootsOf(secret) {
  assert.equal(secret.type, 'validation_context');
  return secret.validation_context.trusted_ca.inline_bytes.toString();
}

// ---------------------------------------------------------------------------------------------

module.exports = {
  GUARD_MS, meshidBinary, start, startAgent, waitForLog, stop, httpGet, Reader, md, request, secretsByName, splitPem,
  checkWorkloadSecret, rootsOf,
};
