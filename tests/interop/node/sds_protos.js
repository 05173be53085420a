// Envoy's own protos, as shipped in @grpc/grpc-js-xds (deps/envoy-api and its xds, googleapis and
// protoc-gen-validate siblings), loaded two ways: @grpc/proto-loader for the gRPC client and
// protobufjs (proto-loader's own parser) for decoding Secret resources and comparing schemas.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const DEPS = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const ENVOY_INCLUDES = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => path.join(DEPS, d));
const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

// A protobufjs Root that resolves imports against `includeDirs`; google/protobuf/* come from
// protobufjs's bundled well-known types.
function loadRoot(files, includeDirs) {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    for (const dir of includeDirs) {
      const candidate = path.join(dir, target);
      if (fs.existsSync(candidate)) return candidate;
    }
    return target;  // e.g. google/protobuf/any.proto, built into protobufjs
  };
  root.loadSync(files, { keepCase: true });
  root.resolveAll();
  return root;
}

let envoyRoot = null;
function envoy() {
  if (envoyRoot === null) {
    envoyRoot = loadRoot(
      ['envoy/service/secret/v3/sds.proto', 'envoy/extensions/transport_sockets/tls/v3/secret.proto',
        'envoy/config/core/v3/base.proto', 'google/rpc/status.proto'],
      ENVOY_INCLUDES);
  }
  return envoyRoot;
}

// A SecretDiscoveryService client on `target` (e.g. "unix:/path/socket").
function sdsClient(target) {
  const definition = protoLoader.loadSync('envoy/service/secret/v3/sds.proto', {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: ENVOY_INCLUDES,
  });
  const pkg = grpc.loadPackageDefinition(definition);
  return new pkg.envoy.service.secret.v3.SecretDiscoveryService(target, grpc.credentials.createInsecure());
}

// Decodes an Any holding an envoy.extensions.transport_sockets.tls.v3.Secret.
function decodeSecret(any) {
  if (any.type_url !== SECRET_TYPE_URL) throw new Error(`unexpected type_url ${any.type_url}`);
  const Secret = envoy().lookupType('envoy.extensions.transport_sockets.tls.v3.Secret');
  return Secret.toObject(Secret.decode(any.value), { oneofs: true, bytes: Buffer, defaults: false });
}

module.exports = { DEPS, ENVOY_INCLUDES, SECRET_TYPE_URL, loadRoot, envoy, sdsClient, decodeSecret };
