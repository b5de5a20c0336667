#!/usr/bin/env node
// smsc-client.js - measures the ceiling of the local SMSC (tests/smsc/smsc.js) without
// smswire in between, for the SMPP scenario of the benchmark harness (BENCHMARKS.md).
//
// It binds one transceiver with the same npm `smpp` package the SMSC is built on, keeps
// `--window` submit_sm outstanding (asking for receipts, as smswire does), answers every
// deliver_sm, and after `--seconds` prints one JSON line:
//   {"submits":N,"receipts":M,"seconds":S,"rate":N/S}
// counting only the submit_sm_resp that arrived after a short warm-up, so connection
// set-up is not part of the figure. Run with NODE_PATH pointing at the node_modules that
// holds `smpp` (the harness installs it into target/smsc, as the integration tests do).
'use strict';

const smpp = require('smpp');

const opts = { port: 2775, window: 10, seconds: 10, warmup: 1, systemId: 'bench', password: 'bench' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const [name, value] = [argv[i], argv[i + 1]];
  if (value === undefined) fail('missing value for ' + name);
  switch (name) {
    case '--port': opts.port = Number(value); break;
    case '--window': opts.window = Number(value); break;
    case '--seconds': opts.seconds = Number(value); break;
    case '--warmup': opts.warmup = Number(value); break;
    case '--system-id': opts.systemId = value; break;
    case '--password': opts.password = value; break;
    default: fail('unknown flag ' + name);
  }
}
function fail(message) { process.stderr.write('smsc-client.js: ' + message + '\n'); process.exit(2); }

const session = smpp.connect({ url: 'smpp://127.0.0.1:' + opts.port });
session.socket.setNoDelay(true);
session.on('error', (e) => fail('connection: ' + e.message));

let counting = false;
let stopping = false;
let submits = 0;
let receipts = 0;

// Receipts must be acknowledged or the SMSC stops sending them; they are counted, not waited
// for, since the figure is submits per second over the bind.
session.on('deliver_sm', (pdu) => {
  if (counting) receipts++;
  session.send(pdu.response());
});

function submitOne() {
  // The same destination as the harness's POSTs (ends in none of the SMSC's error codes).
  session.submit_sm({
    source_addr: '36789', destination_addr: '590690112233', short_message: 'Hello world !', registered_delivery: 1,
  }, (resp) => {
    if (resp.command_status !== 0) fail('submit refused with status ' + resp.command_status);
    if (counting) submits++;
    if (!stopping) submitOne();
  });
}

session.bind_transceiver({ system_id: opts.systemId, password: opts.password }, (resp) => {
  if (resp.command_status !== 0) fail('bind refused with status ' + resp.command_status);
  for (let i = 0; i < opts.window; i++) submitOne();
  setTimeout(() => {
    counting = true;
    const started = process.hrtime.bigint();
    setTimeout(() => {
      counting = false;
      stopping = true;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      process.stdout.write(JSON.stringify({ submits, receipts, seconds, rate: submits / seconds }) + '\n');
      // Let the last responses in, then leave without waiting for queued receipts.
      setTimeout(() => process.exit(0), 200);
    }, opts.seconds * 1000);
  }, opts.warmup * 1000);
});
