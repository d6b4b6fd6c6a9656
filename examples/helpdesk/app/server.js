// Helpdesk agent for the ten-beat demo (examples/helpdesk/README.md).
//
// Plain Node, no dependencies: it runs inside a gVisor sandbox whose image holds only the node binary. Its whole
// memory of the conversation is a JavaScript array, in RAM only: nothing is written to disk, so the only way the
// history survives a suspend, a resume or the loss of its worker is the sandbox's memory snapshot.
//
//   POST /chat   {"message": "..."}  -> {"reply", "history_turns", "responder", "metadata", ...}
//   GET  /status                     -> history_turns, uptime, pid, started_at, sandbox id/name, responder
//   GET  /readyz                     -> 200 {"ok": true} once listening
//   POST /probe  {"url"?, "timeout_ms"?} -> tries one outbound HTTP request: {"blocked", "error_code", "elapsed_ms", ...}
//
// Environment:
//   PORT (default 80), HOST (default 0.0.0.0)
//   OPENSHELL_SANDBOX_ID, OPENSHELL_SANDBOX  reported by /status when set (the driver sets them)
//   EXFIL_PROBE_URL      default target of /probe (default http://203.0.113.7/, a documentation address)
//   PROBE_TIMEOUT_MS     default probe timeout (default 3000)
//   LLM_BASE_URL, LLM_MODEL, LLM_API_KEY, LLM_TIMEOUT_MS
//                        when LLM_BASE_URL is set, replies come from that OpenAI-compatible endpoint
//                        (/v1/chat/completions) given the whole history; otherwise a deterministic responder
//                        answers from the history, offline. The API key is sent as a bearer token and never
//                        logged, echoed or reported.
//   MAX_BODY_BYTES (default 16384), MAX_MESSAGE_CHARS (default 4000)
import http from 'node:http';
import https from 'node:https';
import { randomBytes } from 'node:crypto';

const env = process.env;

function intEnv(name, def, min, max) {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`helpdesk: ${name} must be an integer from ${min} to ${max}, got "${raw}"\n`);
    process.exit(2);
  }
  return n;
}

const PORT = intEnv('PORT', 80, 0, 65535);
const HOST = env.HOST || '0.0.0.0';
const MAX_BODY_BYTES = intEnv('MAX_BODY_BYTES', 16 * 1024, 64, 1024 * 1024);
const MAX_MESSAGE_CHARS = intEnv('MAX_MESSAGE_CHARS', 4000, 1, 100_000);
const PROBE_TIMEOUT_MS = intEnv('PROBE_TIMEOUT_MS', 3000, 1, 60_000);
const LLM_TIMEOUT_MS = intEnv('LLM_TIMEOUT_MS', 30_000, 1, 600_000);
const DEFAULT_PROBE_URL = env.EXFIL_PROBE_URL || 'http://203.0.113.7/';

/** The LLM endpoint, when configured. The key lives only here and in the Authorization header. */
const llm = (() => {
  const base = (env.LLM_BASE_URL || '').trim();
  if (!base) return null;
  let u;
  try {
    u = new URL(base);
  } catch {
    process.stderr.write('helpdesk: LLM_BASE_URL is not a valid URL (expected e.g. http://127.0.0.1:11434/v1)\n');
    process.exit(2);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    process.stderr.write('helpdesk: LLM_BASE_URL must be an http:// or https:// URL\n');
    process.exit(2);
  }
  // Credentials in the URL are never shown; they stay out of every log line and reply.
  u.username = '';
  u.password = '';
  const path = u.pathname.replace(/\/+$/, '');
  u.pathname = /\/v1$/.test(path) ? `${path}/chat/completions` : `${path}/v1/chat/completions`;
  u.search = '';
  u.hash = '';
  return {
    url: u.toString(),
    model: env.LLM_MODEL || 'gpt-4o-mini',
    hasKey: !!env.LLM_API_KEY,
  };
})();

const RESPONDER = llm ? 'openai-compatible' : 'deterministic';
const SYSTEM_PROMPT =
  'You are a concise IT helpdesk agent. You remember the whole conversation with this user. ' +
  'When the user refers to something they asked earlier, say what it was.';

const startedAt = new Date();
const instanceId = randomBytes(8).toString('hex');
/** @type {Array<{role: 'user'|'assistant', content: string, at: string}>} */
const history = [];
let chatQueue = Promise.resolve();

function log(msg, fields = {}) {
  process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), msg, ...fields }) + '\n');
}

function userTurns() {
  return history.filter((h) => h.role === 'user');
}

function sandboxInfo() {
  return { id: env.OPENSHELL_SANDBOX_ID || null, name: env.OPENSHELL_SANDBOX || null };
}

function send(res, status, body, extraHeaders = {}) {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...extraHeaders,
  });
  res.end(text);
}

function fail(res, status, code, message, extraHeaders) {
  send(res, status, { error: { code, message } }, extraHeaders);
}

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The request body as a string; rejects with HttpError 400 past MAX_BODY_BYTES (the rest is drained, not kept). */
function readBody(req) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    const tooBig = () =>
      new HttpError(400, 'body_too_large', `request body exceeds ${MAX_BODY_BYTES} bytes; send a shorter message`);
    if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) {
      req.resume();
      reject(tooBig());
      return;
    }
    const chunks = [];
    let size = 0;
    let over = false;
    req.on('data', (c) => {
      if (over) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        over = true;
        chunks.length = 0;
        reject(tooBig());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', (e) => {
      if (!over) reject(e);
    });
  });
}

/** Parses a JSON object body. An empty body is `{}` only when `allowEmpty`. */
async function readJsonObject(req, allowEmpty) {
  const text = await readBody(req);
  if (text.trim() === '') {
    if (allowEmpty) return {};
    throw new HttpError(400, 'invalid_json', 'request body is empty; send a JSON object such as {"message": "..."}');
  }
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, 'invalid_json', `request body is not valid JSON (${e.message}); send a JSON object such as {"message": "..."}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new HttpError(400, 'invalid_json', 'request body must be a JSON object such as {"message": "..."}');
  }
  return v;
}

function quote(s, max = 160) {
  const one = s.replace(/\s+/g, ' ').trim();
  return `"${one.length > max ? one.slice(0, max - 1) + '…' : one}"`;
}

/** Offline responder: answers from the history alone, the same way every time. */
function deterministicReply(message) {
  const asked = userTurns().map((h) => h.content);
  const turn = asked.length + 1;
  if (asked.length === 0) {
    return (
      `Helpdesk here. You asked: ${quote(message)}. I have logged it as your first question ` +
      `and I will remember it for the rest of this conversation.`
    );
  }
  const earlier = asked.length === 1 ? '1 earlier question' : `${asked.length} earlier questions`;
  return (
    `You asked earlier: ${quote(asked[0])}. Now you ask: ${quote(message)}. ` +
    `This is turn ${turn}; I remember ${earlier} from this conversation.`
  );
}

async function llmReply(message) {
  const messages = [
    { role: 'system', content: SYSTEM_PROMPT },
    ...history.map((h) => ({ role: h.role, content: h.content })),
    { role: 'user', content: message },
  ];
  const headers = { 'content-type': 'application/json', accept: 'application/json' };
  if (env.LLM_API_KEY) headers.authorization = `Bearer ${env.LLM_API_KEY}`;
  let res;
  try {
    res = await fetch(llm.url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ model: llm.model, messages }),
      signal: AbortSignal.timeout(LLM_TIMEOUT_MS),
    });
  } catch (e) {
    const code = e?.cause?.code || (e?.name === 'TimeoutError' ? 'ETIMEDOUT' : e?.name || 'ERROR');
    throw new HttpError(502, 'llm_unreachable', `the LLM endpoint ${llm.url} could not be reached (${code})`);
  }
  // The body of an error answer is not shown: some providers echo (part of) the key in it.
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined);
    throw new HttpError(502, 'llm_error', `the LLM endpoint ${llm.url} answered HTTP ${res.status}`);
  }
  let data;
  try {
    data = await res.json();
  } catch {
    throw new HttpError(502, 'llm_bad_response', `the LLM endpoint ${llm.url} did not answer JSON`);
  }
  const content = data?.choices?.[0]?.message?.content;
  if (typeof content !== 'string' || content.trim() === '') {
    throw new HttpError(502, 'llm_bad_response', `the LLM endpoint ${llm.url} answered without choices[0].message.content`);
  }
  return { reply: content.trim(), model: typeof data.model === 'string' ? data.model : llm.model };
}

async function handleChat(req, res) {
  const body = await readJsonObject(req, false);
  if (!('message' in body)) {
    throw new HttpError(400, 'missing_message', 'field "message" is required: send {"message": "your question"}');
  }
  if (typeof body.message !== 'string') {
    throw new HttpError(400, 'invalid_message', `field "message" must be a string, got ${body.message === null ? 'null' : typeof body.message}`);
  }
  const message = body.message.trim();
  if (message === '') throw new HttpError(400, 'invalid_message', 'field "message" is empty; ask a question');
  if (message.length > MAX_MESSAGE_CHARS) {
    throw new HttpError(400, 'message_too_long', `field "message" has ${message.length} characters; the limit is ${MAX_MESSAGE_CHARS}`);
  }

  // One conversation, one turn at a time: concurrent requests queue so the history stays in order.
  const run = chatQueue.then(async () => {
    const t0 = Date.now();
    let reply;
    let model = null;
    if (llm) {
      ({ reply, model } = await llmReply(message));
    } else {
      reply = deterministicReply(message);
    }
    // The turn is recorded only once it has a reply: a failed LLM call loses nothing and adds nothing.
    const at = new Date().toISOString();
    history.push({ role: 'user', content: message, at }, { role: 'assistant', content: reply, at });
    const turns = userTurns();
    return {
      reply,
      history_turns: turns.length,
      responder: RESPONDER,
      first_question: turns[0].content,
      metadata: {
        responder: RESPONDER,
        offline: !llm,
        model,
        note: llm
          ? 'reply generated by the configured OpenAI-compatible endpoint from the in-memory history'
          : 'deterministic responder: the reply is built from the in-memory history; no model was called',
        elapsed_ms: Date.now() - t0,
      },
      sandbox: sandboxInfo(),
      instance_id: instanceId,
    };
  });
  chatQueue = run.catch(() => undefined);
  send(res, 200, await run);
}

function probe(url, timeoutMs) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      resolve({ url, ...r, elapsed_ms: Date.now() - t0 });
    };
    const mod = url.startsWith('https:') ? https : http;
    let req;
    try {
      req = mod.request(url, { method: 'GET', headers: { 'user-agent': 'helpdesk-exfil-probe' } }, (res) => {
        res.resume();
        finish({ blocked: false, error_code: null, error: null, http_status: res.statusCode });
        req.destroy();
      });
    } catch (e) {
      finish({ blocked: true, error_code: e.code || 'ERROR', error: e.message, http_status: null });
      return;
    }
    const timer = setTimeout(() => {
      finish({ blocked: true, error_code: 'ETIMEDOUT', error: `no answer within ${timeoutMs} ms`, http_status: null });
      req.destroy();
    }, timeoutMs);
    req.on('error', (e) => finish({ blocked: true, error_code: e.code || 'ERROR', error: e.message, http_status: null }));
    req.on('close', () => clearTimeout(timer));
    req.end();
  });
}

async function handleProbe(req, res) {
  const body = await readJsonObject(req, true);
  const target = body.url === undefined ? DEFAULT_PROBE_URL : body.url;
  if (typeof target !== 'string') throw new HttpError(400, 'invalid_url', 'field "url" must be a string such as "http://203.0.113.7/"');
  let u;
  try {
    u = new URL(target);
  } catch {
    throw new HttpError(400, 'invalid_url', `field "url" is not a valid URL: ${quote(target, 80)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new HttpError(400, 'invalid_url', `field "url" must be an http:// or https:// URL, got ${u.protocol}`);
  }
  let timeoutMs = PROBE_TIMEOUT_MS;
  if (body.timeout_ms !== undefined) {
    if (!Number.isInteger(body.timeout_ms) || body.timeout_ms < 1 || body.timeout_ms > 60_000) {
      throw new HttpError(400, 'invalid_timeout', 'field "timeout_ms" must be an integer from 1 to 60000');
    }
    timeoutMs = body.timeout_ms;
  }
  const result = await probe(u.toString(), timeoutMs);
  log('probe', { url: result.url, blocked: result.blocked, error_code: result.error_code, elapsed_ms: result.elapsed_ms });
  send(res, 200, { ...result, sandbox: sandboxInfo() });
}

function status() {
  const turns = userTurns();
  return {
    service: 'helpdesk',
    history_turns: turns.length,
    first_question: turns.length > 0 ? turns[0].content : null,
    responder: RESPONDER,
    llm: llm ? { url: llm.url, model: llm.model, api_key_set: llm.hasKey } : null,
    uptime_s: Math.round((Date.now() - startedAt.getTime()) / 100) / 10,
    started_at: startedAt.toISOString(),
    pid: process.pid,
    instance_id: instanceId,
    node_version: process.version,
    sandbox: sandboxInfo(),
    sandbox_id: sandboxInfo().id,
    sandbox_name: sandboxInfo().name,
  };
}

const ROUTES = {
  '/chat': { POST: handleChat },
  '/probe': { POST: handleProbe },
  '/status': { GET: (_q, s) => send(s, 200, status()) },
  '/readyz': { GET: (_q, s) => send(s, 200, { ok: true }) },
  '/': {
    GET: (_q, s) =>
      send(s, 200, {
        service: 'helpdesk',
        endpoints: ['POST /chat {"message": "..."}', 'GET /status', 'GET /readyz', 'POST /probe {"url": "http://..."}'],
      }),
  },
};

const server = http.createServer(async (req, res) => {
  const t0 = Date.now();
  const path = (req.url || '/').split('?')[0];
  try {
    const route = ROUTES[path];
    if (!route) throw new HttpError(404, 'not_found', `no such endpoint ${req.method} ${path}; try GET /`);
    const handler = route[req.method];
    if (!handler) {
      const allow = Object.keys(route).join(', ');
      res.setHeader('allow', allow);
      throw new HttpError(405, 'method_not_allowed', `${path} accepts ${allow}, not ${req.method}`);
    }
    await handler(req, res);
  } catch (e) {
    if (e instanceof HttpError) {
      // A rejected body may still be arriving: close the connection after the answer instead of reading it.
      fail(res, e.status, e.code, e.message, e.code === 'body_too_large' ? { connection: 'close' } : {});
    } else {
      log('internal error', { error: String(e && e.message ? e.message : e) });
      if (!res.headersSent) fail(res, 500, 'internal', 'internal error; see the agent log');
      else res.destroy();
    }
  } finally {
    if (path !== '/readyz') log('request', { method: req.method, path, status: res.statusCode, ms: Date.now() - t0 });
  }
});

server.on('clientError', (_e, socket) => {
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
});

server.listen(PORT, HOST, () => {
  const addr = server.address();
  log('listening', {
    host: HOST,
    port: typeof addr === 'object' && addr ? addr.port : PORT,
    responder: RESPONDER,
    llm_url: llm ? llm.url : null,
    sandbox: sandboxInfo(),
  });
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.once(sig, () => {
    log('stopping', { signal: sig });
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
