#!/usr/bin/env node
// Checks meshid's own minimal copies of Envoy's protos (api/envoy/**, api/google/rpc/**, plus
// api/xds and api/udpa if present) against Envoy's published ones from @grpc/grpc-js-xds: every
// message field we declare must exist upstream with the same number, name, type, cardinality and
// oneof; every enum value with the same number; every service method with the same types and
// streaming. Fields we leave out are fine (protobuf keeps them as unknown fields).
//
// Usage: node sds_proto_check.js --api-dir <repo>/api
'use strict';

const fs = require('fs');
const path = require('path');
const protobuf = require('protobufjs');
const { ENVOY_INCLUDES, loadRoot } = require('./sds_protos.js');

function arg(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const apiDir = arg('--api-dir') || path.join(__dirname, '..', '..', '..', 'api');
const files = [];
for (const top of ['envoy', 'google/rpc', 'xds', 'udpa']) {
  const walk = (rel) => {
    const abs = path.join(apiDir, rel);
    if (!fs.existsSync(abs)) return;
    for (const entry of fs.readdirSync(abs, { withFileTypes: true })) {
      const child = path.join(rel, entry.name);
      if (entry.isDirectory()) walk(child);
      else if (entry.name.endsWith('.proto')) files.push(child);
    }
  };
  walk(top);
}
if (files.length === 0) {
  console.error(`no protos under ${apiDir}`);
  process.exit(1);
}

// Newer than the data-plane-api snapshot in @grpc/grpc-js-xds: xDS TP3 per-resource errors
// (envoyproxy/data-plane-api envoy/service/discovery/v3/discovery.proto at 84e84367f256, see
// shared/reference/istio-ca-sds.md §4.2). For these we only check that the snapshot does not use
// the number for something else.
const NEWER_UPSTREAM = {
  '.envoy.service.discovery.v3.ResourceError': null,
  '.envoy.service.discovery.v3.DiscoveryResponse.resource_errors': 7,
  '.envoy.service.discovery.v3.DeltaDiscoveryResponse.resource_errors': 9,
};

const problems = [];
for (const f of files) {
  if (!ENVOY_INCLUDES.some((dir) => fs.existsSync(path.join(dir, f)))) problems.push(`${f}: no such file upstream`);
}
const mine = loadRoot(files, [apiDir]);
const theirs = loadRoot(files.filter((f) => ENVOY_INCLUDES.some((dir) => fs.existsSync(path.join(dir, f)))),
  ENVOY_INCLUDES);

function typeOf(field) {
  const base = field.resolvedType ? field.resolvedType.fullName : field.type;
  if (field.map) return `map<${field.keyType}, ${base}>`;
  return (field.repeated ? 'repeated ' : '') + base;
}

let checked = 0;
function compare(obj) {
  if (obj instanceof protobuf.Type) {
    const up = theirs.lookup(obj.fullName);
    if (!(up instanceof protobuf.Type)) {
      if (!(obj.fullName in NEWER_UPSTREAM)) problems.push(`${obj.fullName}: no such message upstream`);
    } else {
      for (const field of obj.fieldsArray) {
        checked++;
        const other = up.fields[field.name];
        const where = `${obj.fullName}.${field.name}`;
        if (!other && NEWER_UPSTREAM[where] === field.id) {
          const clash = up.fieldsArray.find((f) => f.id === field.id);
          if (clash) problems.push(`${where} = ${field.id}: upstream uses ${field.id} for ${clash.name}`);
          continue;
        }
        if (!other) {
          problems.push(`${where} = ${field.id}: no such field upstream`);
          continue;
        }
        if (other.id !== field.id) problems.push(`${where}: number ${field.id}, upstream ${other.id}`);
        if (typeOf(other) !== typeOf(field)) problems.push(`${where}: type ${typeOf(field)}, upstream ${typeOf(other)}`);
        const oneof = field.partOf ? field.partOf.name : '';
        const upOneof = other.partOf ? other.partOf.name : '';
        if (oneof !== upOneof) problems.push(`${where}: oneof "${oneof}", upstream "${upOneof}"`);
      }
      for (const range of obj.reserved || []) {
        if (typeof range === 'string') continue;
        for (let n = range[0]; n <= range[1]; n++) {
          const used = up.fieldsArray.find((f) => f.id === n);
          if (used) problems.push(`${obj.fullName}: we reserve ${n}, upstream uses it for ${used.name}`);
        }
      }
    }
  } else if (obj instanceof protobuf.Enum) {
    const up = theirs.lookup(obj.fullName);
    if (!(up instanceof protobuf.Enum)) {
      problems.push(`${obj.fullName}: no such enum upstream`);
    } else {
      for (const [name, value] of Object.entries(obj.values)) {
        checked++;
        if (up.values[name] !== value) problems.push(`${obj.fullName}.${name} = ${value}, upstream ${up.values[name]}`);
      }
    }
  } else if (obj instanceof protobuf.Service) {
    const up = theirs.lookup(obj.fullName);
    if (!(up instanceof protobuf.Service)) {
      problems.push(`${obj.fullName}: no such service upstream`);
    } else {
      for (const method of obj.methodsArray) {
        checked++;
        const other = up.methods[method.name];
        const where = `${obj.fullName}/${method.name}`;
        if (!other) {
          problems.push(`${where}: no such method upstream`);
          continue;
        }
        const sig = (m) => `${m.requestStream ? 'stream ' : ''}${m.resolvedRequestType.fullName} -> ` +
          `${m.responseStream ? 'stream ' : ''}${m.resolvedResponseType.fullName}`;
        if (sig(method) !== sig(other)) problems.push(`${where}: ${sig(method)}, upstream ${sig(other)}`);
      }
    }
  }
  if (obj.nestedArray) {
    for (const nested of obj.nestedArray) compare(nested);
  }
}
for (const ns of ['envoy', 'google.rpc', 'xds', 'udpa']) {
  const top = mine.lookup(ns);
  if (top) compare(top);
}

if (problems.length > 0) {
  console.error(`${problems.length} mismatch(es) between api/ and Envoy's protos:`);
  for (const p of problems) console.error(`  ${p}`);
  process.exit(1);
}
if (checked < 50) {
  console.error(`only ${checked} fields checked: the comparison did not find our protos`);
  process.exit(1);
}
console.log(`ok: ${files.length} proto files, ${checked} fields/values/methods match Envoy's published protos`);
