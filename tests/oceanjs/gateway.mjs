// ocean.js 8 against the node's Ocean-compatible HTTP API (tests/test_ocean_gateway.py runs it).
//
//   node gateway.mjs run  --node URL --key-file F --env ENV --did DID --service SID --out DIR
//   node gateway.mjs stop --node URL --key-file F --env ENV
//   node gateway.mjs token --node URL --key-file F --env ENV --did DID --service SID
//   node gateway.mjs paid --node URL --key-file F --env ENV --rpc URL --chain ID --token ADDR
//                         [--script TEXT] [--no-wait]
//
// "run" lists the environments, initializes, starts a free job with raw code over the dataset,
// polls its status until it has ended, downloads every result by index (and the output again
// resumed with a Range from its middle) and reads the log stream; "stop" starts a job that
// would run for minutes and stops it; "token" asks for an auth token (generateAuthToken) and does
// the same with it in place of the wallet: a free job, its status, every result, its log, a stop,
// then revokes the token (invalidateAuthToken) and tries it once more; "paid" initializes with a
// payment, pays through Ocean's Escrow with ocean.js's own helpers (approve, deposit, authorize the
// node for the quote), starts a paid job (computeStart) and, unless --no-wait, polls it until it
// has ended and its payment has settled. Each prints one JSON line for the test to check.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { JsonRpcProvider, Wallet, formatUnits } from 'ethers'
import { EscrowContract, ProviderInstance, approve } from '@oceanprotocol/lib'

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    node: { type: 'string' },
    'key-file': { type: 'string' },
    env: { type: 'string' },
    did: { type: 'string' },
    service: { type: 'string' },
    out: { type: 'string' },
    rpc: { type: 'string' },
    chain: { type: 'string' },
    token: { type: 'string' },
    script: { type: 'string' },
    'no-wait': { type: 'boolean' }
  }
})
const node = values.node
const wallet = new Wallet(readFileSync(values['key-file'], 'utf8').trim())
const ENDED = new Set([70, 41, 2, 11, 21, 22, 31, 32, 42, 62])
const container = { entrypoint: 'sh $ALGO', image: 'busybox', tag: '1.36', checksum: '' }

async function bytesOf(stream) {
  const parts = []
  for await (const part of stream) parts.push(Buffer.from(part))
  return Buffer.concat(parts)
}

async function statusOf(jobId, signer = wallet) {
  const jobs = await ProviderInstance.computeStatus(node, signer, jobId)
  return Array.isArray(jobs) ? jobs[0] : jobs
}

async function untilEnded(jobId, signer = wallet) {
  for (;;) {
    const job = await statusOf(jobId, signer)
    if (ENDED.has(job.status)) return job
    await new Promise((resolve) => setTimeout(resolve, 200)) // polling interval, as an ocean.js app would
  }
}

async function run() {
  const envs = await ProviderInstance.getComputeEnvironments(node)
  const env = envs.find((e) => e.id === values.env)
  if (!env) throw new Error(`environment ${values.env} not listed: ${JSON.stringify(envs.map((e) => e.id))}`)
  const datasets = [{ documentId: values.did, serviceId: values.service }]
  const algorithm = {
    meta: {
      rawcode:
        'echo "ocean.js: counting lines"\n' +
        'find "$C2D_DATA/inputs" -type f -name numbers.csv -exec cat {} + | wc -l > "$C2D_DATA/outputs/lines.txt"\n' +
        'seq 1 2000 > "$C2D_DATA/outputs/sequence.txt"\n',
      container
    }
  }
  const quote = await ProviderInstance.initializeCompute(
    datasets, algorithm, env.id, '', 60, node, wallet.address, [], 0
  )
  const started = await ProviderInstance.freeComputeStart(node, wallet, env.id, datasets, algorithm, [], { from: 'ocean.js' })
  const job = Array.isArray(started) ? started[0] : started
  const ended = await untilEnded(job.jobId)
  mkdirSync(values.out, { recursive: true })
  const results = []
  for (const result of ended.results) {
    const data = await bytesOf(await ProviderInstance.getComputeResult(node, wallet, job.jobId, result.index))
    const path = join(values.out, `${result.index}-${result.filename.replaceAll('/', '_')}`)
    writeFileSync(path, data)
    const entry = { ...result, path, downloaded: data.length }
    if (result.type === 'output') {
      const offset = Math.floor(data.length / 2)
      const rest = await bytesOf(await ProviderInstance.getComputeResult(node, wallet, job.jobId, result.index, offset))
      entry.resumedFrom = offset
      entry.resumedMatches = Buffer.compare(rest, data.subarray(offset)) === 0
    }
    results.push(entry)
  }
  const logs = await ProviderInstance.computeStreamableLogs(node, wallet, job.jobId)
  const log = logs ? (await bytesOf(logs)).toString('utf8') : null
  console.log(JSON.stringify({
    consumer: wallet.address, environments: envs.map((e) => e.id), quote, started: job, ended, results, log
  }))
}

async function stop() {
  const algorithm = { meta: { rawcode: 'echo started\nsleep 600\n', container } }
  const started = await ProviderInstance.freeComputeStart(node, wallet, values.env, [], algorithm)
  const job = Array.isArray(started) ? started[0] : started
  const stopped = await ProviderInstance.computeStop(job.jobId, node, wallet)
  const ended = await untilEnded(job.jobId)
  console.log(JSON.stringify({ started: job, stopped, ended }))
}

async function refusal(call) {
  try {
    await call()
    return null
  } catch (error) {
    return String(error.message ?? error)
  }
}

async function token() {
  const token = await ProviderInstance.generateAuthToken(wallet, node)
  const datasets = [{ documentId: values.did, serviceId: values.service }]
  const algorithm = {
    meta: { rawcode: 'echo "ocean.js: with a token"\necho done > "$C2D_DATA/outputs/done.txt"\n', container }
  }
  const started = await ProviderInstance.freeComputeStart(node, token, values.env, datasets, algorithm)
  const job = Array.isArray(started) ? started[0] : started
  const ended = await untilEnded(job.jobId, token)
  const results = []
  for (const result of ended.results) {
    // getComputeResult sends no Authorization header with a token (ocean.js 8.6.2): fetch the URL it
    // builds for the token (consumerAddress, jobId, index) with the header, as an application must.
    const url = await ProviderInstance.getComputeResultUrl(node, token, job.jobId, result.index)
    const response = await fetch(url, { headers: { Authorization: token } })
    results.push({ ...result, httpStatus: response.status, downloaded: (await response.arrayBuffer()).byteLength })
  }
  const withoutHeader = await refusal(() => ProviderInstance.getComputeResult(node, token, job.jobId, 0))
  const logs = await ProviderInstance.computeStreamableLogs(node, token, job.jobId)
  const log = logs ? (await bytesOf(logs)).toString('utf8') : null
  const sleeper = { meta: { rawcode: 'echo started\nsleep 600\n', container } }
  const running = await ProviderInstance.freeComputeStart(node, token, values.env, [], sleeper)
  const runningJob = Array.isArray(running) ? running[0] : running
  const stopped = await ProviderInstance.computeStop(runningJob.jobId, node, token)
  const stoppedEnd = await untilEnded(runningJob.jobId, token)
  const invalidated = await ProviderInstance.invalidateAuthToken(wallet, token, node)
  const afterInvalidation = await refusal(() => ProviderInstance.freeComputeStart(node, token, values.env, [], algorithm))
  console.log(JSON.stringify({
    consumer: wallet.address, token, started: job, ended, results, withoutHeader, log,
    stopped, stoppedEnd, invalidated, afterInvalidation
  }))
}

// Payments settle after the job: its status stays "Job settling" (71) until the claim is mined.
const SETTLED = new Set(['claimed', 'released'])

async function untilSettled(jobId) {
  for (;;) {
    const job = await statusOf(jobId)
    if (ENDED.has(job.status) && job.payment && SETTLED.has(job.payment.status)) return job
    await new Promise((resolve) => setTimeout(resolve, 200)) // polling interval, as an ocean.js app would
  }
}

// ocean.js's helpers answer with a sent transaction or its receipt: the next one waits for it.
async function mined(sent) {
  const tx = await sent
  if (tx && typeof tx.wait === 'function') await tx.wait()
  return tx
}

async function escrowView(escrow, token, payee) {
  const funds = await escrow.getUserFunds(wallet.address, token)
  const locks = await escrow.getLocks(token, wallet.address, payee)
  return {
    available: funds[0].toString(),
    locked: funds[1].toString(),
    locks: locks.map((l) => ({ jobId: l[0].toString(), payer: l[1], amount: l[2].toString() }))
  }
}

async function paid() {
  const chainId = Number(values.chain)
  const token = values.token
  // no cache: ethers would reuse a nonce read within 250 ms for the helpers' next transaction
  const signer = wallet.connect(new JsonRpcProvider(values.rpc, chainId, { staticNetwork: true, cacheTimeout: -1 }))
  const rawcode = values.script ?? 'echo "ocean.js: paid"\nseq 1 100 > "$C2D_DATA/outputs/paid.txt"\n'
  const algorithm = { meta: { rawcode, container } }
  const duration = 120
  const quote = await ProviderInstance.initializeCompute(
    [], algorithm, values.env, token, duration, node, wallet.address, [], chainId
  )
  const pay = quote.payment
  if (!pay) throw new Error(`initializeCompute named no payment: ${JSON.stringify(quote)}`)
  // ocean.js's escrow helpers take whole tokens (and scale every number by the token's decimals)
  const config = { chainId, nodeUri: values.rpc, gasFeeMultiplier: 1 }
  const escrow = new EscrowContract(pay.escrowAddress, signer, chainId, config)
  const deposit = formatUnits(BigInt(pay.amount) * 3n, 18)
  await mined(approve(signer, config, wallet.address, token, pay.escrowAddress, deposit))
  await mined(escrow.deposit(token, deposit))
  await mined(escrow.authorize(token, pay.payee, formatUnits(BigInt(pay.amount) * 2n, 18), String(pay.minLockSeconds), '1'))
  const before = await escrowView(escrow, token, pay.payee)
  const started = await ProviderInstance.computeStart(
    node, wallet, values.env, [], algorithm, duration, token, [], chainId, { from: 'ocean.js paid' }
  )
  if (!started) throw new Error('computeStart was refused (see the log above)')
  const job = Array.isArray(started) ? started[0] : started
  const locked = await escrowView(escrow, token, pay.payee)
  const summary = { consumer: wallet.address, quote, before, started: job, locked }
  if (!values['no-wait']) {
    summary.ended = await untilSettled(job.jobId)
    summary.after = await escrowView(escrow, token, pay.payee)
  }
  console.log(JSON.stringify(summary))
}

const commands = { run, stop, token, paid }
await commands[positionals[0]]()
