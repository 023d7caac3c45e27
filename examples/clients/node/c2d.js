// A minimal Compute-to-Data client for Node.js, written from docs/signing.md (scheme v2).
//
// Stock libraries only: @grpc/proto-loader (protobufjs 7) serializes the requests from the
// repository's proto files, ethers 6 signs, @grpc/grpc-js sends. The one thing to get right is
// that the signed bytes are the bytes sent: each request is serialized once, without auth, those
// bytes are signed, and the wire carries them followed by the encoded auth field.
"use strict";

const crypto = require("node:crypto");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const { ethers } = require("ethers");

const PROTO_ROOT = path.resolve(__dirname, "..", "..", "..", "proto");
const SERVICE = "c2d.compute.v1.ComputeService";
const SCHEME_V2 = 2;
const DOMAIN_V2 = "c2d-auth-v2";

// Proto3 JSON-like objects: camelCase field names, 64-bit integers as strings, enums by name.
const LOADER_OPTIONS = { longs: String, enums: String, defaults: false, oneofs: true };

function loadService() {
  const definition = protoLoader.loadSync(path.join(PROTO_ROOT, "c2d/compute/v1/compute.proto"), {
    ...LOADER_OPTIONS,
    includeDirs: [PROTO_ROOT],
  });
  return definition[SERVICE];
}

const METHODS = loadService();

/** The text signed for a request (docs/signing.md, step 3). */
function signingText(address, nonce, method, digest) {
  return `${DOMAIN_V2}\nsigner:${address.toLowerCase()}\nnonce:${nonce}\nmethod:${method}\nbody:${digest}`;
}

function sha256Hex(bytes) {
  return crypto.createHash("sha256").update(bytes).digest("hex");
}

/**
 * The bytes to send for `request` (a plain object without auth) to method `name`, signed by
 * `wallet` with `nonce`: body || auth field. Also returns what was signed, for diagnostics.
 */
async function signedRequest(wallet, name, request, nonce) {
  const method = METHODS[name];
  if (!method) throw new Error(`no method ${name} in ${SERVICE}`);
  const body = method.requestSerialize(request); // step 1: the body, serialized once
  const digest = sha256Hex(body); // step 2
  const text = signingText(wallet.address, nonce, method.path, digest); // step 3
  const signature = ethers.getBytes(await wallet.signMessage(text)); // step 4: EIP-191
  // Step 5: a request holding only auth serializes to exactly the auth field (tag, length, Auth),
  // whatever the field's number (1, or 4 in InitializeComputeRequest).
  const authField = method.requestSerialize({
    auth: { address: wallet.address, nonce: String(nonce), signature, version: SCHEME_V2 },
  });
  return { bytes: Buffer.concat([body, authField]), body, digest, text };
}

// -- google.rpc.Status details (grpc-status-details-bin): the node's ErrorInfo ------------------

function* protoFields(buf) {
  let pos = 0;
  const varint = () => {
    let value = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buf[pos++];
      value |= BigInt(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
      shift += 7n;
    }
  };
  while (pos < buf.length) {
    const tag = Number(varint());
    const number = tag >> 3;
    const type = tag & 7;
    if (type === 0) yield [number, varint()];
    else if (type === 2) {
      const length = Number(varint());
      yield [number, buf.subarray(pos, pos + length)];
      pos += length;
    } else if (type === 1) pos += 8;
    else if (type === 5) pos += 4;
    else return;
  }
}

/** The google.rpc.ErrorInfo in a gRPC error's status details: {reason, domain, metadata} or null. */
function errorInfo(error) {
  const values = error && error.metadata ? error.metadata.get("grpc-status-details-bin") : [];
  for (const status of values) {
    for (const [number, detail] of protoFields(Buffer.from(status))) {
      if (number !== 3) continue; // Status.details: Any
      let typeUrl = "";
      let value = Buffer.alloc(0);
      for (const [n, v] of protoFields(detail)) {
        if (n === 1) typeUrl = v.toString();
        if (n === 2) value = v;
      }
      if (!typeUrl.endsWith("/google.rpc.ErrorInfo")) continue;
      const info = { reason: "", domain: "", metadata: {} };
      for (const [n, v] of protoFields(value)) {
        if (n === 1) info.reason = v.toString();
        if (n === 2) info.domain = v.toString();
        if (n === 3) {
          let key = "";
          let val = "";
          for (const [en, ev] of protoFields(v)) {
            if (en === 1) key = ev.toString();
            if (en === 2) val = ev.toString();
          }
          info.metadata[key] = val;
        }
      }
      return info;
    }
  }
  return null;
}

class C2DError extends Error {
  constructor(error, signed) {
    const info = errorInfo(error);
    let message = `${grpc.status[error.code] || error.code}: ${error.details || error.message}`;
    if (info && info.reason === "BAD_SIGNATURE" && signed) {
      // What the node computed next to what we signed: the first difference is the bug.
      message +=
        `\n  node digest ${info.metadata.digest}\n  ours        ${signed.digest}` +
        `\n  node text ${JSON.stringify(info.metadata.signing_text)}\n  ours      ${JSON.stringify(signed.text)}`;
    }
    super(message);
    this.code = error.code;
    this.info = info;
  }
}

// -- the client -----------------------------------------------------------------------------

const identity = (bytes) => bytes;

class Client {
  /** `address` host:port of the node's public API; `privateKey` 0x-hex (optional for unsigned calls). */
  constructor(address, privateKey) {
    this.grpc = new grpc.Client(address, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    });
    this.wallet = privateKey ? new ethers.Wallet(privateKey) : null;
    this.lastNonce = 0n;
    this.queue = Promise.resolve(); // signed calls go one at a time: nonces must arrive in order
  }

  close() {
    this.grpc.close();
  }

  /** A nonce above every one this client used: microseconds since the epoch. */
  nextNonce() {
    const now = BigInt(Date.now()) * 1000n;
    this.lastNonce = now > this.lastNonce ? now : this.lastNonce + 1n;
    return this.lastNonce;
  }

  _serialized(name, request) {
    return METHODS[name].requestSerialize(request);
  }

  _send(name, bytes, signed) {
    const method = METHODS[name];
    return new Promise((resolve, reject) => {
      this.grpc.makeUnaryRequest(
        method.path,
        identity,
        method.responseDeserialize,
        bytes,
        new grpc.Metadata(),
        { deadline: Date.now() + 60_000 },
        (error, response) => (error ? reject(new C2DError(error, signed)) : resolve(response)),
      );
    });
  }

  /** An unsigned unary call (GetEnvironments, unsigned InitializeCompute). */
  call(name, request) {
    return this._send(name, this._serialized(name, request), null);
  }

  /** A signed unary call; a stale nonce (another client with this key) is retried once above it. */
  signedCall(name, request) {
    const attempt = async (retry) => {
      const signed = await signedRequest(this.wallet, name, request, this.nextNonce());
      try {
        return await this._send(name, signed.bytes, signed);
      } catch (error) {
        const last = error.info && error.info.reason === "STALE_NONCE" && error.info.metadata.last_nonce;
        if (!retry || !last) throw error;
        if (BigInt(last) > this.lastNonce) this.lastNonce = BigInt(last);
        return attempt(false);
      }
    };
    const result = this.queue.then(() => attempt(true));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** A signed server-streaming call: resolves to every message, in order. */
  signedStream(name, request) {
    const method = METHODS[name];
    const run = async () => {
      const signed = await signedRequest(this.wallet, name, request, this.nextNonce());
      return new Promise((resolve, reject) => {
        const messages = [];
        const call = this.grpc.makeServerStreamRequest(
          method.path,
          identity,
          method.responseDeserialize,
          signed.bytes,
          new grpc.Metadata(),
          { deadline: Date.now() + 120_000 },
        );
        call.on("data", (message) => messages.push(message));
        call.on("error", (error) => reject(new C2DError(error, signed)));
        call.on("end", () => resolve(messages));
      });
    };
    const result = this.queue.then(run);
    this.queue = result.catch(() => undefined);
    return result;
  }
}

// -- the workflow JSON of examples/*.json, as c2d.workflow reads it ---------------------------

function toValue(value) {
  if (value === null) return { nullValue: "NULL_VALUE" };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  if (typeof value === "object") return { structValue: toStruct(value) };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  return { stringValue: String(value) };
}

function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, toValue(v)])) };
}

function runAfter(value) {
  if (value === null || value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map((item) =>
    typeof item === "string" ? { jobId: item } : { stageIndex: item },
  );
}

function resources(list) {
  return (list || []).map((r) => ({ id: r.id, amount: r.amount }));
}

/** A c2d.compute.v1.Workflow object from a workflow file's JSON (a list of stages, or {stages, ...}). */
function workflowFromJson(doc, environmentId) {
  const workflow = Array.isArray(doc) ? { stages: doc } : doc;
  const out = {
    stages: workflow.stages.map((stage, i) => {
      const algorithm = stage.algorithm || {};
      const algo = {};
      if (algorithm.did) algo.did = algorithm.did;
      if (algorithm.serviceId) algo.serviceId = algorithm.serviceId;
      if (algorithm.rawcode) algo.rawcode = algorithm.rawcode;
      if (algorithm.files) algo.files = toStruct(algorithm.files);
      if (algorithm.customData) algo.customData = toStruct(algorithm.customData);
      if (algorithm.container) algo.container = { ...algorithm.container };
      return {
        index: stage.index ?? i,
        runAfter: runAfter(stage.runAfter),
        input: (stage.input || []).map((input, j) => ({
          index: input.index ?? j,
          did: input.did || "",
          serviceId: input.serviceId || "",
          ...(input.files ? { files: toStruct(input.files) } : {}),
          ...(input.userdata ? { userData: toStruct(input.userdata) } : {}),
        })),
        algorithm: algo,
        environmentId: stage.environment || "",
        resources: resources(stage.resources),
        maxDurationSeconds: stage.maxJobDuration || 0,
      };
    }),
    environmentId: environmentId || workflow.environment || "",
    resources: resources(workflow.resources),
    maxDurationSeconds: workflow.maxJobDuration || 0,
    viewers: workflow.viewers || [],
  };
  return out;
}

module.exports = {
  METHODS,
  SERVICE,
  SCHEME_V2,
  Client,
  C2DError,
  errorInfo,
  signedRequest,
  signingText,
  sha256Hex,
  workflowFromJson,
};
