#!/usr/bin/env node
// smsc.js - a small local SMSC (SMPP 3.4 server) for smswire's integration tests.
//
// smswire's Rust tests spawn it on 127.0.0.1, read one JSON line per event
// from its stdout and drive it with one JSON command per line on stdin.
// It exits when stdin closes, so a test that dies never leaves it running.
// Behaviour, flags, commands and events are described in README.md here.
'use strict';

let smpp;
try { smpp = require('smpp'); } catch (e) {
  process.stderr.write('smsc.js: cannot load the smpp package: run `npm ci` in a copy of this folder ' +
    'and point NODE_PATH at its node_modules (see README.md)\n');
  process.exit(2);
}
const readline = require('readline');

// ---- options ----------------------------------------------------------------
const opts = { port: 0, idFormat: 'hex', receipt: 'both', receiptDelay: 50, respDelay: 0,
  systemId: null, password: null };
const flags = {
  '--port': (v) => { opts.port = num(v); },
  '--id-format': (v) => { opts.idFormat = oneOf(v, ['hex', 'decimal']); },
  '--receipt': (v) => { opts.receipt = oneOf(v, ['tlv', 'text', 'both', 'none']); },
  '--receipt-delay-ms': (v) => { opts.receiptDelay = num(v); },
  '--resp-delay-ms': (v) => { opts.respDelay = num(v); },
  '--system-id': (v) => { opts.systemId = v; },
  '--password': (v) => { opts.password = v; },
};
function die(msg) { process.stderr.write('smsc.js: ' + msg + '\n'); process.exit(2); }
function num(v) { const n = Number(v); if (!Number.isInteger(n) || n < 0) die('bad number ' + v); return n; }
function oneOf(v, list) { if (!list.includes(v)) die('expected one of ' + list.join('|')); return v; }
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const eq = argv[i].indexOf('=');
  const name = eq > 0 ? argv[i].slice(0, eq) : argv[i];
  if (!flags[name]) die('unknown flag ' + argv[i]);
  const value = eq > 0 ? argv[i].slice(eq + 1) : argv[++i];
  if (value === undefined) die('missing value for ' + name);
  flags[name](value);
}

// We report raw octets, so keep the library from decoding what we receive:
// by default it turns short_message into {udh, message} through a GSM table
// and the time fields into Date objects.
for (const f of ['short_message', 'validity_period', 'schedule_delivery_time']) {
  delete smpp.commands.submit_sm.params[f].filter;
}
delete smpp.tlvs.message_payload.filter;

// ---- output -----------------------------------------------------------------
process.stdout.on('error', () => process.exit(0)); // reader went away
function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

// ---- state ------------------------------------------------------------------
const ST = { ROK: 0x00, RINVBNDSTS: 0x04, RALYBND: 0x05, RINVDSTADR: 0x0B,
  RINVPASWD: 0x0E, RINVSYSID: 0x0F, RSUBMITFAIL: 0x45, RTHROTTLED: 0x58 };
const STATE_TLV = { DELIVRD: 2, EXPIRED: 3, UNDELIV: 5, REJECTD: 8 };
const sessions = new Map();      // id -> our per-connection record
const throttled = new Map();     // destination_addr -> submits seen (for ...0008)
const queuedReceipts = [];       // receipts waiting for a receiver of their system_id
let nextSession = 1;
let nextMessageId = 0x1000;
let holding = false;
let held = [];                   // pending submit responses waiting for hold off
const stats = { submits: 0, by_status: {}, max_outstanding: 0, binds: 0, enquire_links: 0,
  enquire_link_resps: 0, receipts_sent: 0, delivers_sent: 0, deliver_sm_resps: 0 };

const renderId = (n) => (opts.idFormat === 'hex' ? n.toString(16) : String(n));
const canReceive = (s) => s.bound === 'receiver' || s.bound === 'transceiver';
const canSend = (s) => s.bound === 'transmitter' || s.bound === 'transceiver';
function ts(d) { // YYMMDDhhmm, UTC
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) +
    p(d.getUTCHours()) + p(d.getUTCMinutes());
}

// ---- server -----------------------------------------------------------------
const server = smpp.createServer((session) => {
  const s = { id: nextSession++, session, bound: null, system_id: null,
    pending: new Set(), max_outstanding: 0, sent: new Map() };
  sessions.set(s.id, s);
  session.socket.setNoDelay(true);
  session.on('pdu', (pdu) => onPdu(s, pdu));
  // A decode error leaves the library's reader stuck: drop the connection.
  session.on('error', (e) => { emit({ event: 'error', session: s.id, message: String(e.message) }); session.destroy(); });
  session.socket.on('close', () => {
    for (const p of s.pending) clearTimeout(p.timer);
    held = held.filter((p) => p.s !== s);
    sessions.delete(s.id);
    emit({ event: 'closed', session: s.id, system_id: s.system_id, cancelled: s.pending.size,
      max_outstanding: s.max_outstanding });
    s.pending.clear();
  });
});

function onPdu(s, pdu) {
  const seq = pdu.sequence_number;
  switch (pdu.command) {
    case 'bind_transceiver': case 'bind_transmitter': case 'bind_receiver': {
      let status = ST.ROK;
      if (s.bound) status = ST.RALYBND;
      else if (opts.systemId !== null && pdu.system_id !== opts.systemId) status = ST.RINVSYSID;
      else if (opts.password !== null && pdu.password !== opts.password) status = ST.RINVPASWD;
      if (status === ST.ROK) {
        s.bound = pdu.command.slice(5); s.system_id = pdu.system_id; stats.binds++;
      }
      emit({ event: pdu.command, session: s.id, system_id: pdu.system_id, sequence_number: seq, command_status: status });
      s.session.send(pdu.response({ command_status: status, system_id: 'smswire-smsc' }));
      if (status === ST.ROK && canReceive(s)) flushQueuedReceipts();
      return;
    }
    case 'unbind':
      emit({ event: 'unbind', session: s.id, sequence_number: seq });
      s.bound = null;
      s.session.send(pdu.response());
      return;
    case 'enquire_link':
      stats.enquire_links++;
      emit({ event: 'enquire_link', session: s.id, sequence_number: seq });
      s.session.send(pdu.response());
      return;
    case 'enquire_link_resp':
      stats.enquire_link_resps++;
      emit({ event: 'enquire_link_resp', session: s.id, sequence_number: seq, command_status: pdu.command_status });
      return;
    case 'submit_sm': return onSubmit(s, pdu);
    case 'deliver_sm_resp': {
      const info = s.sent.get(seq) || {};
      s.sent.delete(seq);
      stats.deliver_sm_resps++;
      emit({ event: 'deliver_sm_resp', session: s.id, sequence_number: seq, command_status: pdu.command_status,
        kind: info.kind || null, message_id: info.message_id || null });
      return;
    }
    case 'unbind_resp': case 'generic_nack':
      emit({ event: pdu.command, session: s.id, sequence_number: seq, command_status: pdu.command_status });
      return;
    default:
      emit({ event: 'unsupported', session: s.id, command: pdu.command, command_id: pdu.command_id, sequence_number: seq });
      if (!pdu.isResponse()) s.session.send(pdu.command === 'unknown' ? pdu.response()
        : pdu.response({ command_status: 0x03 /* ESME_RINVCMDID */ }));
  }
}

// Concatenation info from a UDH (IEI 0x00 or 0x08) or from the SAR TLVs, else null.
function concatInfo(pdu, sm) {
  if ((pdu.esm_class & 0x40) && sm.length > 0) {
    const end = 1 + sm[0];
    for (let i = 1; i + 1 < end && i + 2 + sm[i + 1] <= end; i += 2 + sm[i + 1]) {
      const iei = sm[i], d = i + 2;
      if (iei === 0x00 && sm[i + 1] === 3) return { ref: sm[d], total: sm[d + 1], seq: sm[d + 2] };
      if (iei === 0x08 && sm[i + 1] === 4) return { ref: sm.readUInt16BE(d), total: sm[d + 2], seq: sm[d + 3] };
    }
  }
  if (pdu.sar_msg_ref_num !== undefined) {
    return { ref: pdu.sar_msg_ref_num, total: pdu.sar_total_segments, seq: pdu.sar_segment_seqnum };
  }
  return null;
}

function onSubmit(s, pdu) {
  const dest = pdu.destination_addr;
  const sm = Buffer.isBuffer(pdu.short_message) ? pdu.short_message : Buffer.alloc(0);
  let status = ST.ROK;
  if (!canSend(s)) status = ST.RINVBNDSTS;
  else if (dest.endsWith('0009')) status = ST.RINVDSTADR;
  else if (dest.endsWith('0007')) status = ST.RSUBMITFAIL;
  else if (dest.endsWith('0008')) {
    const n = (throttled.get(dest) || 0) + 1;
    throttled.set(dest, n);
    if (n <= 2) status = ST.RTHROTTLED;
  }
  const messageId = status === ST.ROK ? renderId(nextMessageId) : null;
  const idNumber = status === ST.ROK ? nextMessageId++ : null;
  const p = { s, pdu, status, messageId, idNumber, sm, concat: concatInfo(pdu, sm), at: new Date(), timer: null };
  s.pending.add(p);
  s.max_outstanding = Math.max(s.max_outstanding, s.pending.size);
  stats.max_outstanding = Math.max(stats.max_outstanding, s.pending.size);
  stats.submits++;
  stats.by_status[status] = (stats.by_status[status] || 0) + 1;
  const payload = pdu.message_payload;
  emit({ event: 'submit_sm', session: s.id, sequence_number: pdu.sequence_number,
    service_type: pdu.service_type,
    source_addr: pdu.source_addr, source_addr_ton: pdu.source_addr_ton, source_addr_npi: pdu.source_addr_npi,
    destination_addr: dest, dest_addr_ton: pdu.dest_addr_ton, dest_addr_npi: pdu.dest_addr_npi,
    esm_class: pdu.esm_class, protocol_id: pdu.protocol_id, priority_flag: pdu.priority_flag,
    data_coding: pdu.data_coding, registered_delivery: pdu.registered_delivery,
    schedule_delivery_time: pdu.schedule_delivery_time, validity_period: pdu.validity_period,
    short_message: sm.toString('hex'),
    message_payload: Buffer.isBuffer(payload) ? payload.toString('hex') : null,
    concat: p.concat, message_id: messageId, command_status: status,
    outstanding: s.pending.size, max_outstanding: s.max_outstanding });
  if (opts.respDelay > 0) p.timer = setTimeout(() => respond(p), opts.respDelay);
  else respond(p);
}

function respond(p) {
  p.timer = null;
  if (!p.s.pending.has(p)) return;          // connection gone: cancelled
  if (holding) { held.push(p); return; }
  p.s.pending.delete(p);
  const resp = p.pdu.response({ command_status: p.status, message_id: p.messageId || '' });
  p.s.session.send(resp);
  emit({ event: 'submit_sm_resp', session: p.s.id, sequence_number: p.pdu.sequence_number,
    message_id: p.messageId, command_status: p.status, outstanding: p.s.pending.size });
  if (p.status === ST.ROK && (p.pdu.registered_delivery & 1) && opts.receipt !== 'none') {
    setTimeout(() => sendReceipt(p), opts.receiptDelay);
  }
}

function finalStat(dest, concat) {
  if (dest.endsWith('0002')) return 'UNDELIV';
  if (dest.endsWith('0001')) return 'EXPIRED';
  if (dest.endsWith('0003')) return 'REJECTD';
  if (dest.endsWith('0005') && concat && concat.seq === 2) return 'UNDELIV';
  return 'DELIVRD';
}

// First 20 characters of the text, after any UDH, as printable ASCII.
function textOf(p) {
  let body = p.sm.length || !Buffer.isBuffer(p.pdu.message_payload) ? p.sm : p.pdu.message_payload;
  if ((p.pdu.esm_class & 0x40) && body.length > 0) body = body.slice(1 + body[0]);
  const str = p.pdu.data_coding === 8
    ? Buffer.from(body.slice(0, body.length & ~1)).swap16().toString('utf16le') : body.toString('latin1');
  return str.replace(/[^\x20-\x7e]/g, '?').slice(0, 20);
}

function sendReceipt(p) {
  const pdu = p.pdu;
  const stat = finalStat(pdu.destination_addr, p.concat);
  const textId = opts.idFormat === 'hex' ? String(p.idNumber) : p.messageId;
  const ok = stat === 'DELIVRD';
  const text = opts.receipt === 'tlv'
    ? 'receipt for ' + p.messageId + ': ' + stat // deliberately non-standard: read the TLVs
    : 'id:' + textId + ' sub:001 dlvrd:' + (ok ? '001' : '000') + ' submit date:' + ts(p.at) +
      ' done date:' + ts(new Date()) + ' stat:' + stat + ' err:' + (ok ? '000' : '001') + ' text:' + textOf(p);
  const fields = { service_type: '',
    source_addr_ton: pdu.dest_addr_ton, source_addr_npi: pdu.dest_addr_npi, source_addr: pdu.destination_addr,
    dest_addr_ton: pdu.source_addr_ton, dest_addr_npi: pdu.source_addr_npi, destination_addr: pdu.source_addr,
    esm_class: 0x04, data_coding: 0, short_message: Buffer.from(text, 'latin1') };
  if (opts.receipt !== 'text') {
    fields.receipted_message_id = p.messageId;
    fields.message_state = STATE_TLV[stat];
  }
  const r = { system_id: p.s.system_id, from: p.s, fields, text, message_id: p.messageId, stat };
  if (!deliverReceipt(r)) queuedReceipts.push(r);
}

// Send to the submitting session if it can receive, else to another receiver of the same system_id.
function deliverReceipt(r) {
  let target = sessions.has(r.from.id) && canReceive(r.from) ? r.from : null;
  if (!target) target = [...sessions.values()].find((x) => canReceive(x) && x.system_id === r.system_id);
  if (!target) return false;
  if (!sendDeliver(target, r.fields, { kind: 'receipt', message_id: r.message_id, stat: r.stat, text: r.text })) {
    return false;
  }
  stats.receipts_sent++;
  return true;
}

function flushQueuedReceipts() {
  for (let i = 0; i < queuedReceipts.length;) {
    if (deliverReceipt(queuedReceipts[i])) queuedReceipts.splice(i, 1); else i++;
  }
}

function sendDeliver(target, fields, info) {
  const pdu = new smpp.PDU('deliver_sm', fields);
  if (!target.session.send(pdu)) return false;   // socket no longer writable
  target.sent.set(pdu.sequence_number, info);
  emit({ event: 'deliver_sm', session: target.id, sequence_number: pdu.sequence_number, kind: info.kind,
    source_addr: fields.source_addr, destination_addr: fields.destination_addr, esm_class: fields.esm_class,
    data_coding: fields.data_coding, short_message: fields.short_message.toString('hex'),
    text: info.text, message_id: info.message_id || null, stat: info.stat || null,
    receipted_message_id: fields.receipted_message_id || null, message_state: fields.message_state || null });
  return true;
}

// ---- stdin commands -----------------------------------------------------------
const commands = {
  stats: () => ({ ...stats, sessions_open: sessions.size, held: held.length,
    pending: [...sessions.values()].reduce((n, s) => n + s.pending.size, 0),
    queued_receipts: queuedReceipts.length,
    sessions: [...sessions.values()].map((s) => ({ session: s.id, bound: s.bound, system_id: s.system_id,
      outstanding: s.pending.size, max_outstanding: s.max_outstanding })) }),
  close: () => {
    let cancelled = 0;
    const all = [...sessions.values()];
    for (const s of all) { cancelled += s.pending.size; for (const p of s.pending) clearTimeout(p.timer); }
    held = [];
    for (const s of all) s.session.destroy();
    return { closed: all.length, cancelled };
  },
  enquire_link: () => {
    const ids = [];
    for (const s of sessions.values()) if (s.bound) { s.session.enquire_link(); ids.push(s.id); }
    return { sent: ids.length, sessions: ids };
  },
  deliver: (c) => {
    if (typeof c.to !== 'string' || typeof c.from !== 'string' || typeof c.text !== 'string') {
      throw new Error('deliver needs string to, from and text');
    }
    const ucs2 = c.data_coding === 8 || (c.data_coding === undefined && /[^\x00-\x7f]/.test(c.text));
    const sm = ucs2 ? Buffer.from(c.text, 'utf16le').swap16() : Buffer.from(c.text, 'latin1');
    const ids = [];
    for (const s of sessions.values()) {
      if (!canReceive(s) || (c.system_id !== undefined && s.system_id !== c.system_id)) continue;
      if (sendDeliver(s, { source_addr: c.from, destination_addr: c.to, esm_class: 0,
        data_coding: ucs2 ? 8 : (c.data_coding || 0), short_message: sm }, { kind: 'mo', text: c.text })) {
        stats.delivers_sent++;
        ids.push(s.id);
      }
    }
    return { sent: ids.length, sessions: ids };
  },
  hold: (c) => {
    holding = !!c.on;
    if (holding) return { on: true, held: held.length };
    const release = held; held = [];
    release.forEach(respond);
    return { on: false, released: release.length };
  },
  quit: () => { setImmediate(() => process.exit(0)); return {}; },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let c;
  try { c = JSON.parse(line); } catch (e) { emit({ event: 'result', cmd: null, ok: false, error: 'bad json' }); return; }
  const fn = c && commands[c.cmd];
  if (!fn) { emit({ event: 'result', cmd: c && c.cmd, ok: false, error: 'unknown command' }); return; }
  try { emit({ event: 'result', cmd: c.cmd, ok: true, ...fn(c) }); } catch (e) {
    emit({ event: 'result', cmd: c.cmd, ok: false, error: String(e.message) });
  }
});
rl.on('close', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

server.on('error', (e) => die('listen: ' + e.message));
server.listen(opts.port, '127.0.0.1', () => emit({ event: 'listening', port: server.address().port }));
