#!/usr/bin/env node
// Checks docs/signing-vectors.json with this client's own signing code (c2d.js): protobufjs reads
// each body, the digest, text and signature (ethers 6) come out the same, and the bytes it would
// send are wire_hex. Vectors written by protobufjs are re-serialized from their JSON too.
"use strict";

const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { ethers } = require("ethers");
const { METHODS, signedRequest, signingText, sha256Hex } = require("./c2d");

const VECTORS = path.resolve(__dirname, "..", "..", "..", "docs", "signing-vectors.json");

async function check(vector) {
  const name = vector.method.split("/").pop();
  const method = METHODS[name];
  assert.equal(method.path, vector.method);
  const body = Buffer.from(vector.body_hex, "hex");
  const request = method.requestDeserialize(body);
  if (vector.written_by.startsWith("protobufjs")) {
    assert.equal(method.requestSerialize(vector.message_json).toString("hex"), vector.body_hex, "protobufjs bytes");
  }
  assert.equal(sha256Hex(body), vector.digest);
  const wallet = new ethers.Wallet(vector.private_key);
  assert.equal(wallet.address, vector.address);
  assert.equal(signingText(wallet.address, vector.nonce, vector.method, vector.digest), vector.signing_text);
  const signed = await signedRequest(wallet, name, request, vector.nonce);
  assert.equal(signed.body.toString("hex"), vector.body_hex, "protobufjs re-serializes the body it read");
  assert.equal(signed.text, vector.signing_text);
  assert.equal(signed.bytes.toString("hex"), vector.wire_hex);
  assert.equal(ethers.verifyMessage(vector.signing_text, "0x" + vector.signature_hex), vector.address);
}

async function main() {
  const { vectors } = JSON.parse(fs.readFileSync(VECTORS, "utf8"));
  for (const vector of vectors) {
    await check(vector);
    console.log(`ok ${vector.name}`);
  }
  console.log(`${vectors.length} vectors ok`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
