// A kcqrs client written from docs/wire-contract.md alone, with kafkajs
// (not franz-go): it sends JSON commands to a processor and checks their
// replies. Run by `make contract-test` against a `kcqrs broker` and a
// processor started as separate processes; KCQRS_BROKERS names the broker.
'use strict'

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const { Kafka, Partitioners, logLevel } = require('kafkajs')

const brokers = (process.env.KCQRS_BROKERS || '127.0.0.1:9092').split(',')
const run = crypto.randomBytes(4).toString('hex')
const replyTopic = `contract-replies-${run}`
const REPLY_PARTITION = 1 // our own partition of our reply topic (kafka_replyPartition)

const kafka = new Kafka({ clientId: `contract-${run}`, brokers, logLevel: logLevel.WARN })
const admin = kafka.admin()
// kafkajs 2.x's default partitioner is Java's murmur2: what the processor checks.
const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
const consumer = kafka.consumer({ groupId: `contract-${run}`, readUncommitted: false })
const waiting = new Map() // correlation id -> resolve
const arrived = new Map() // correlation id -> reply seen before anyone waited
let commandPartitions = 0

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

before(async () => {
  await admin.connect()
  // The processor creates its topics when it starts: wait for them.
  for (let i = 0; ; i++) {
    try {
      const md = await admin.fetchTopicMetadata({ topics: ['commands', 'command_reply'] })
      commandPartitions = md.topics.find((t) => t.name === 'commands').partitions.length
      if (commandPartitions > 0) break
    } catch (e) {
      if (i > 120) throw e
    }
    await sleep(500)
  }
  // A reply topic of our own, created before the first command: we read
  // it from the beginning, so no reply can be missed.
  await admin.createTopics({ topics: [{ topic: replyTopic, numPartitions: 2 }], waitForLeaders: true })
  await producer.connect()
  await consumer.connect()
  await consumer.subscribe({ topic: replyTopic, fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const corr = message.headers.kafka_correlationId.toString()
      const reply = { partition, headers: message.headers, value: message.value }
      const resolve = waiting.get(corr)
      if (resolve) {
        waiting.delete(corr)
        resolve(reply)
      } else {
        arrived.set(corr, reply)
      }
    },
  })
})

after(async () => {
  await consumer.disconnect()
  await producer.disconnect()
  await admin.deleteTopics({ topics: [replyTopic] }).catch(() => {})
  await admin.disconnect()
})

// send produces one command and resolves with its reply: the decoded JSON
// body, the reply's headers (as strings) and its partition.
async function send ({ id, type, body, headers = {}, partition, aggregateType = 'account', commandId, contentType = 'application/json' }) {
  const corr = crypto.randomUUID()
  const h = {
    kcqrs_command_id: commandId || crypto.randomUUID(),
    kcqrs_aggregate_type: aggregateType,
    kcqrs_command_type: type,
    kafka_correlationId: corr,
    kafka_replyTopic: replyTopic,
    kafka_replyPartition: Buffer.from([0, 0, 0, REPLY_PARTITION]), // 4-byte big-endian int32
    ...headers,
  }
  if (contentType !== null) h['content-type'] = contentType
  const got = new Promise((resolve) => {
    if (arrived.has(corr)) resolve(arrived.get(corr))
    else waiting.set(corr, resolve)
  })
  const message = { key: id, value: typeof body === 'string' ? body : JSON.stringify(body), headers: h }
  if (partition !== undefined) message.partition = partition
  await producer.send({ topic: 'commands', messages: [message] })
  let timer
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no reply to ${type} ${id} in 60s`)), 60000) })
  const r = await Promise.race([got, timeout])
  clearTimeout(timer)
  const hs = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, v.toString()]))
  assert.equal(hs.kafka_correlationId, corr, 'kafka_correlationId echoed')
  assert.equal(hs.kcqrs_command_id, h.kcqrs_command_id)
  assert.equal(r.partition, REPLY_PARTITION, 'kafka_replyPartition honoured')
  assert.equal(hs['content-type'], 'application/json', 'a JSON command gets a JSON reply')
  const reply = JSON.parse(r.value.toString())
  assert.equal(hs.kcqrs_version, String(reply.version), 'kcqrs_version header = reply version')
  return { reply, headers: hs }
}

function expect (reply, status, code, version) {
  assert.equal(reply.status, status, JSON.stringify(reply))
  assert.equal(reply.code, code, JSON.stringify(reply))
  assert.equal(reply.version, version, JSON.stringify(reply))
}

test('an account through the whole contract', { timeout: 180000 }, async () => {
  const acc = `node-${run}`
  let { reply } = await send({ id: acc, type: 'OpenAccount', body: { owner: 'Ada', currency: 'EUR' }, headers: { kcqrs_expected_version: 'no_stream' } })
  expect(reply, 'ACCEPTED', '', 1)
  assert.equal(reply.events, 1)
  assert.equal(reply.duplicate, false)
  assert.equal(reply.aggregateId, acc)
  assert.equal(reply.aggregateType, 'account')

  const depositId = crypto.randomUUID()
  ;({ reply } = await send({ id: acc, type: 'Deposit', body: { amount: 100 }, commandId: depositId }))
  expect(reply, 'ACCEPTED', '', 2)

  // A retry with the same id gets the original reply, even with another body.
  ;({ reply } = await send({ id: acc, type: 'Deposit', body: { amount: 999 }, commandId: depositId }))
  expect(reply, 'ACCEPTED', '', 2)
  assert.equal(reply.duplicate, true)
  assert.equal(reply.events, 1)

  ;({ reply } = await send({ id: acc, type: 'Withdraw', body: { amount: 1000 } }))
  expect(reply, 'REJECTED', 'insufficient_funds', 2)

  ;({ reply } = await send({ id: acc, type: 'Deposit', body: { amount: 5 }, headers: { kcqrs_expected_version: '1' } }))
  expect(reply, 'CONFLICT', 'version_conflict', 2)

  ;({ reply } = await send({ id: acc, type: 'Deposit', body: { amount: 5 }, headers: { kcqrs_deadline: '2001-01-01T00:00:00Z' } }))
  expect(reply, 'EXPIRED', 'deadline_exceeded', 2)

  // Media types are case-insensitive.
  ;({ reply } = await send({ id: acc, type: 'Deposit', body: { amount: 1 }, contentType: 'Application/JSON; charset=utf-8' }))
  expect(reply, 'ACCEPTED', '', 3)

  // Large longs are exact.
  ;({ reply } = await send({ id: `big-${run}`, type: 'OpenAccount', body: { owner: 'Big', currency: 'USD' } }))
  expect(reply, 'ACCEPTED', '', 1)
  ;({ reply } = await send({ id: `big-${run}`, type: 'Deposit', body: '{"amount":9007199254740993}' }))
  expect(reply, 'ACCEPTED', '', 2)
  // 2^53 + 1 - 2^53 leaves 1 only if neither number was rounded to a double.
  ;({ reply } = await send({ id: `big-${run}`, type: 'Withdraw', body: '{"amount":9007199254740992}' }))
  expect(reply, 'ACCEPTED', '', 3)
  ;({ reply } = await send({ id: `big-${run}`, type: 'Withdraw', body: '{"amount":1}' }))
  expect(reply, 'ACCEPTED', '', 4)
})

test('invalid commands are answered INVALID with version 0', { timeout: 180000 }, async () => {
  const acc = `bad-${run}`
  for (const body of ['{"amount":"100"}', '{"amount":1.5}', '{"amount":null}', '{"amount":1,"extra":true}']) {
    const { reply } = await send({ id: acc, type: 'Deposit', body })
    expect(reply, 'INVALID', 'undecodable', 0)
  }
  let { reply } = await send({ id: acc, type: 'Deposit', body: { amount: 1 }, headers: { kcqrs_expected_version: '-1' } })
  expect(reply, 'INVALID', 'bad_header', 0)

  ;({ reply } = await send({ id: acc, type: 'Teleport', body: {} }))
  expect(reply, 'INVALID', 'unknown_command_type', 0)
  assert.match(reply.message, /Deposit/, 'the valid command types are listed')

  // JSON without content-type: answered in JSON, naming the header.
  ;({ reply } = await send({ id: acc, type: 'Deposit', body: { amount: 1 }, contentType: null }))
  expect(reply, 'INVALID', 'unsupported_content_type', 0)
  assert.match(reply.message, /content-type/)

  ;({ reply } = await send({ id: acc, type: 'Deposit', body: { amount: 1 }, contentType: 'text/plain' }))
  expect(reply, 'INVALID', 'unsupported_content_type', 0)
})

test('a record on another partition than murmur2 picks is WRONG_PARTITION', { timeout: 180000 }, async () => {
  const acc = `wp-${run}`
  const right = Partitioners.DefaultPartitioner()({
    topic: 'commands',
    partitionMetadata: Array.from({ length: commandPartitions }, (_, i) => ({ partitionId: i, leader: 0 })),
    message: { key: acc },
  })
  const { reply } = await send({ id: acc, type: 'OpenAccount', body: { owner: 'W', currency: 'EUR' }, partition: (right + 1) % commandPartitions })
  expect(reply, 'WRONG_PARTITION', 'wrong_partition', 0)
  // The same command on the right partition is accepted: kafkajs's default
  // partitioner is murmur2.
  const ok = await send({ id: acc, type: 'OpenAccount', body: { owner: 'W', currency: 'EUR' } })
  expect(ok.reply, 'ACCEPTED', '', 1)
})
