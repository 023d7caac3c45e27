#!/usr/bin/env node
// Runs examples/hello.json on a node's free tier, as `c2d start --free --wait`, `c2d result` and
// `c2d logs` do (README, quick start): lists the environments, starts the workflow, follows its
// status, downloads every result of every stage (index 0 and offset 0 included: protobufjs writes
// those zeros, which scheme v2 signs as sent) checking each one's SHA-256, and prints each stage's log.
//
//   node hello.js --node 127.0.0.1:8470 --key-file me.key [--env stub-local] [--out out]
//
// The key is a 0x-hex private key (a file from `c2d key new`, --key, or C2D_KEY; a new random key
// when none is given). The last line printed is a JSON summary, for scripts.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { Client, workflowFromJson, sha256Hex } = require("./c2d");

function parseArgs(argv) {
  const args = {
    node: "127.0.0.1:8470",
    workflow: path.resolve(__dirname, "..", "..", "hello.json"),
    out: "out",
    timeout: 120,
  };
  const flags = {
    "--node": "node",
    "--key": "key",
    "--key-file": "keyFile",
    "--env": "env",
    "--workflow": "workflow",
    "--out": "out",
    "--timeout": "timeout",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (!flags[flag] || value === undefined) {
      throw new Error(
        `usage: node hello.js [--node HOST:PORT] [--key-file FILE | --key HEX] [--env ID] [--workflow FILE] [--out DIR] [--timeout S] (at ${flag})`,
      );
    }
    args[flags[flag]] = value;
  }
  return args;
}

function privateKey(args) {
  if (args.keyFile) return fs.readFileSync(args.keyFile, "utf8").trim();
  if (args.key || process.env.C2D_KEY) return args.key || process.env.C2D_KEY;
  return "0x" + crypto.randomBytes(32).toString("hex");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every byte of one result, resuming from the last byte received if the stream breaks. */
async function download(client, jobId, file) {
  const chunks = [];
  let offset = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      // index and offset set explicitly, even when 0: protobufjs then writes them on the wire.
      const replies = await client.signedStream("GetComputeResult", { jobId, index: file.index, offset: String(offset) });
      for (const reply of replies) {
        // Fields at their default (0, empty) are absent from what proto-loader decodes.
        const at = Number(reply.offset || 0);
        const data = reply.data || Buffer.alloc(0);
        if (at !== offset) throw new Error(`chunk at ${at}, expected ${offset}`);
        chunks.push(data);
        offset += data.length;
      }
      break;
    } catch (error) {
      if (attempt >= 3 || error.code !== 14 /* UNAVAILABLE */) throw error;
    }
  }
  const data = Buffer.concat(chunks);
  if (data.length !== Number(file.size || 0) || sha256Hex(data) !== file.sha256) {
    throw new Error(`result ${file.index} (${file.name}) of job ${jobId}: size or SHA-256 differs from the node's`);
  }
  return data;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const client = new Client(args.node, privateKey(args));
  try {
    console.log(`consumer ${client.wallet.address}`);
    const { environments = [] } = await client.call("GetEnvironments", {});
    for (const env of environments) {
      console.log(`environment ${env.id} (${env.engine}): free tier ${env.free && env.free.enabled ? "on" : "off"}`);
    }
    const env = args.env
      ? environments.find((e) => e.id === args.env)
      : environments.find((e) => e.free && e.free.enabled);
    if (!env) throw new Error(`no ${args.env ? `environment ${args.env}` : "environment with a free tier"} on ${args.node}`);

    const workflow = workflowFromJson(JSON.parse(fs.readFileSync(args.workflow, "utf8")), env.id);
    const started = await client.signedCall("FreeStartCompute", { workflow });
    console.log(`workflow ${started.workflowId}`);
    for (const stage of started.stages) console.log(`stage ${stage.index || 0}: job ${stage.jobId}`);

    const deadline = Date.now() + Number(args.timeout) * 1000;
    const seen = new Map();
    let jobs = [];
    for (;;) {
      ({ jobs = [] } = await client.signedCall("GetComputeStatus", { workflowId: started.workflowId }));
      for (const job of jobs) {
        if (seen.get(job.jobId) !== job.status) {
          seen.set(job.jobId, job.status);
          console.log(`stage ${job.stageIndex || 0}: ${job.status}${job.statusText ? ` (${job.statusText})` : ""}`);
        }
      }
      if (jobs.length === started.stages.length && jobs.every((job) => job.terminal)) break;
      if (Date.now() > deadline) throw new Error(`workflow ${started.workflowId} did not end within ${args.timeout}s`);
      await sleep(300);
    }
    const failed = jobs.filter((job) => job.status !== "JOB_STATUS_FINISHED");
    console.log(`workflow ${started.workflowId}: ${failed.length ? "failed" : "finished"}`);

    const summary = { workflowId: started.workflowId, consumer: client.wallet.address, jobs: [] };
    for (const job of [...jobs].sort((a, b) => (a.stageIndex || 0) - (b.stageIndex || 0))) {
      const directory = path.join(args.out, job.jobId);
      fs.mkdirSync(directory, { recursive: true });
      const results = [];
      for (const listed of job.results || []) {
        const file = { ...listed, index: listed.index || 0 }; // index 0 is absent from the decoded object
        const data = await download(client, job.jobId, file);
        const where = path.join(directory, path.basename(file.name));
        fs.writeFileSync(where, data);
        console.log(`stage ${job.stageIndex || 0}: result ${file.index} ${file.name} (${data.length} bytes) -> ${where}`);
        results.push({ index: file.index, name: file.name, kind: file.kind, size: data.length, sha256: file.sha256, path: where });
      }
      const chunks = await client.signedStream("StreamComputeLogs", { jobId: job.jobId, follow: false, offset: "0" });
      const log = Buffer.concat(chunks.map((chunk) => chunk.data || Buffer.alloc(0))).toString("utf8");
      process.stdout.write(`--- stage ${job.stageIndex || 0} log ---\n${log}`);
      summary.jobs.push({ jobId: job.jobId, stageIndex: job.stageIndex || 0, status: job.status, results, log });
    }
    console.log(JSON.stringify(summary));
    return failed.length ? 1 : 0;
  } finally {
    client.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`error: ${error.message}`);
    process.exit(2);
  },
);
