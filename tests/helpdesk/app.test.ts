// The helpdesk agent (examples/helpdesk/app/server.js) run with plain node on loopback, exactly the file the
// demo's image carries at /app/server.js. Every request goes to 127.0.0.1 only: the exfil probe is aimed at a
// closed loopback port and at a loopback server, never at another address. The OpenAI-compatible endpoint is a
// loopback stand-in (no model can run here); it enforces the parts of the chat-completions contract the agent
// relies on (POST /v1/chat/completions, bearer key, model, ordered messages) and answers like the real API.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const SERVER = fileURLToPath(new URL('../../examples/helpdesk/app/server.js', import.meta.url));

interface Agent {
  url: string;
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

const running: Agent[] = [];
const servers: http.Server[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((a) => a.stop()));
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

/** Starts server.js on 127.0.0.1 with a kernel-chosen port (PORT=0) and waits for its "listening" line. */
async function startAgent(env: Record<string, string> = {}): Promise<Agent> {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(LLM_|OPENSHELL_|EXFIL_|PROBE_)/.test(k)) clean[k] = v;
  }
  const child = spawn(process.execPath, [SERVER], {
    env: { ...clean, PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not start: ${out}`)), 10_000);
    const onData = () => {
      for (const line of out.split('\n')) {
        try {
          const j = JSON.parse(line) as { msg?: string; port?: number };
          if (j.msg === 'listening' && j.port) {
            clearTimeout(timer);
            child.stdout!.off('data', onData);
            resolve(j.port);
            return;
          }
        } catch {
          /* not a JSON line yet */
        }
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code}: ${out}`));
    });
  });
  const agent: Agent = {
    url: `http://127.0.0.1:${port}`,
    child,
    output: () => out,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
  running.push(agent);
  return agent;
}

async function call(agent: Agent, method: string, path: string, body?: string | object) {
  const res = await fetch(agent.url + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

const chat = (a: Agent, message: unknown) => call(a, 'POST', '/chat', { message });

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function listen(handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

describe('helpdesk agent: chat memory', () => {
  it('answers cold, then every follow-up names the first question; history_turns counts the turns', async () => {
    const a = await startAgent();
    expect((await call(a, 'GET', '/readyz')).status).toBe(200);

    const first = 'My VPN drops every ten minutes on the office wifi';
    const r1 = await chat(a, first);
    expect(r1.status).toBe(200);
    expect(r1.json.history_turns).toBe(1);
    expect(r1.json.responder).toBe('deterministic');
    expect(r1.json.metadata).toMatchObject({ responder: 'deterministic', offline: true, model: null });
    expect(r1.json.metadata.note).toMatch(/deterministic/);
    expect(r1.json.reply).toContain(first);

    const r2 = await chat(a, 'What did I ask you before?');
    expect(r2.json.history_turns).toBe(2);
    expect(r2.json.reply).toContain(`You asked earlier: "${first}"`);
    expect(r2.json.reply).toContain('What did I ask you before?');

    const r3 = await chat(a, 'And is there a ticket number?');
    expect(r3.json.history_turns).toBe(3);
    expect(r3.json.reply).toContain(`You asked earlier: "${first}"`);
    expect(r3.json.first_question).toBe(first);

    const st = await call(a, 'GET', '/status');
    expect(st.status).toBe(200);
    expect(st.json).toMatchObject({ history_turns: 3, first_question: first, responder: 'deterministic', pid: a.child.pid });
    expect(Date.parse(st.json.started_at)).not.toBeNaN();
    expect(st.json.uptime_s).toBeGreaterThanOrEqual(0);
  });

  it('is deterministic: two fresh agents give the same replies to the same conversation', async () => {
    const [a, b] = await Promise.all([startAgent(), startAgent()]);
    for (const q of ['printer offline', 'still offline', 'thanks']) {
      const [x, y] = await Promise.all([chat(a, q), chat(b, q)]);
      expect(x.json.reply).toBe(y.json.reply);
      expect(x.json.history_turns).toBe(y.json.history_turns);
    }
  });

  it('keeps one conversation in order under concurrent requests', async () => {
    const a = await startAgent();
    const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => chat(a, `question ${i}`)));
    expect(rs.map((r) => r.json.history_turns).sort()).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await call(a, 'GET', '/status')).json.history_turns).toBe(6);
  });

  it('reports the sandbox id and name from the OpenShell environment', async () => {
    const a = await startAgent({ OPENSHELL_SANDBOX_ID: '7d9c0a52-9f4e-4c44-8d7b-2a4f3c1e0b11', OPENSHELL_SANDBOX: 'alice' });
    const st = await call(a, 'GET', '/status');
    expect(st.json.sandbox_id).toBe('7d9c0a52-9f4e-4c44-8d7b-2a4f3c1e0b11');
    expect(st.json.sandbox_name).toBe('alice');
    expect((await chat(a, 'hi')).json.sandbox).toEqual({ id: '7d9c0a52-9f4e-4c44-8d7b-2a4f3c1e0b11', name: 'alice' });
  });
});

describe('helpdesk agent: bad input', () => {
  it('answers 400 with a clear JSON error and records nothing', async () => {
    const a = await startAgent({ MAX_BODY_BYTES: '1024', MAX_MESSAGE_CHARS: '50' });
    await chat(a, 'the one good question');

    const cases: Array<[string | object, string, RegExp]> = [
      ['{"message": "unterminated', 'invalid_json', /not valid JSON/],
      ['', 'invalid_json', /empty/],
      ['["message"]', 'invalid_json', /JSON object/],
      ['"just a string"', 'invalid_json', /JSON object/],
      [{}, 'missing_message', /"message" is required/],
      [{ msg: 'typo' }, 'missing_message', /"message" is required/],
      [{ message: 42 }, 'invalid_message', /must be a string, got number/],
      [{ message: null }, 'invalid_message', /got null/],
      [{ message: '   ' }, 'invalid_message', /empty/],
      [{ message: 'x'.repeat(51) }, 'message_too_long', /51 characters; the limit is 50/],
      [{ message: 'y'.repeat(5000) }, 'body_too_large', /exceeds 1024 bytes/],
    ];
    for (const [body, code, msg] of cases) {
      const r = await call(a, 'POST', '/chat', body);
      expect(r.status, JSON.stringify(body).slice(0, 40)).toBe(400);
      expect(r.json.error.code).toBe(code);
      expect(r.json.error.message).toMatch(msg);
    }
    const st = await call(a, 'GET', '/status');
    expect(st.json.history_turns).toBe(1);
    expect(st.json.first_question).toBe('the one good question');
    expect((await chat(a, 'second')).json.history_turns).toBe(2);
  });

  it('rejects an oversize body sent without a declared length (chunked)', async () => {
    const a = await startAgent({ MAX_BODY_BYTES: '1024' });
    const u = new URL(a.url);
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: u.hostname, port: u.port, path: '/chat', method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (r) => {
        let body = '';
        r.on('data', (d) => (body += d));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.write('{"message": "');
      req.write('z'.repeat(4096));
      req.end('"}');
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error.code).toBe('body_too_large');
    expect((await call(a, 'GET', '/status')).json.history_turns).toBe(0);
  });

  it('answers 404 for unknown paths and 405 with Allow for wrong methods', async () => {
    const a = await startAgent();
    const nf = await call(a, 'GET', '/nope');
    expect(nf.status).toBe(404);
    expect(nf.json.error.code).toBe('not_found');
    const res = await fetch(a.url + '/chat');
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(((await res.json()) as any).error.code).toBe('method_not_allowed');
  });

  it('refuses to start on an invalid PORT, saying why', async () => {
    await expect(startAgent({ PORT: 'eighty' })).rejects.toThrow(/exited with 2.*PORT must be an integer/s);
  });
});

describe('helpdesk agent: exfil probe', () => {
  it('reports a refused connection as blocked, with its error code and timing', async () => {
    const port = await closedPort();
    const a = await startAgent();
    const r = await call(a, 'POST', '/probe', { url: `http://127.0.0.1:${port}/exfil` });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ url: `http://127.0.0.1:${port}/exfil`, blocked: true, error_code: 'ECONNREFUSED', http_status: null });
    expect(typeof r.json.elapsed_ms).toBe('number');
  });

  it('probes EXFIL_PROBE_URL when the request names no URL', async () => {
    const port = await closedPort();
    const a = await startAgent({ EXFIL_PROBE_URL: `http://127.0.0.1:${port}/default-target` });
    const r = await call(a, 'POST', '/probe');
    expect(r.json).toMatchObject({ url: `http://127.0.0.1:${port}/default-target`, blocked: true, error_code: 'ECONNREFUSED' });
  });

  it('reports not blocked when the request gets an answer', async () => {
    let hits = 0;
    const target = await listen((_q, s) => {
      hits++;
      s.writeHead(204).end();
    });
    const a = await startAgent();
    const r = await call(a, 'POST', '/probe', { url: `${target}/leak` });
    expect(r.json).toMatchObject({ blocked: false, error_code: null, http_status: 204 });
    expect(hits).toBe(1);
  });

  it('reports a silent endpoint as blocked by timeout', async () => {
    const target = await listen(() => {
      /* never answers */
    });
    const a = await startAgent();
    const r = await call(a, 'POST', '/probe', { url: target, timeout_ms: 300 });
    expect(r.json).toMatchObject({ blocked: true, error_code: 'ETIMEDOUT' });
  });

  it('validates the probe request', async () => {
    const a = await startAgent();
    for (const [body, code] of [
      [{ url: 'ftp://127.0.0.1/' }, 'invalid_url'],
      [{ url: 'not a url' }, 'invalid_url'],
      [{ url: 7 }, 'invalid_url'],
      [{ url: 'http://127.0.0.1:1/', timeout_ms: 0 }, 'invalid_timeout'],
      ['{oops', 'invalid_json'],
    ] as Array<[object | string, string]>) {
      const r = await call(a, 'POST', '/probe', body);
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe(code);
    }
  });
});

describe('helpdesk agent: OpenAI-compatible responder', () => {
  const KEY = 'sk-test-DO-NOT-ECHO-4f1c9a';

  /** Stand-in for an OpenAI-compatible chat-completions endpoint, on loopback. */
  async function fakeLlm(opts: { status?: number } = {}) {
    const seen: Array<{ path: string; auth: string | undefined; body: any }> = [];
    const base = await listen((q, s) => {
      let raw = '';
      q.on('data', (d) => (raw += d));
      q.on('end', () => {
        const body = JSON.parse(raw);
        seen.push({ path: q.url ?? '', auth: q.headers.authorization, body });
        if (q.method !== 'POST' || q.url !== '/v1/chat/completions') {
          s.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'unknown route' } }));
          return;
        }
        if (opts.status) {
          s.writeHead(opts.status, { 'content-type': 'application/json' }).end(
            JSON.stringify({ error: { message: `Incorrect API key provided: ${q.headers.authorization}` } }),
          );
          return;
        }
        const users = body.messages.filter((m: any) => m.role === 'user');
        s.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            id: 'chatcmpl-1',
            object: 'chat.completion',
            model: body.model,
            choices: [{ index: 0, message: { role: 'assistant', content: `model saw ${users.length} user turns; first: ${users[0].content}` }, finish_reason: 'stop' }],
          }),
        );
      });
    });
    return { base, seen };
  }

  it('sends the whole history to /v1/chat/completions with the bearer key, and never shows the key', async () => {
    const llm = await fakeLlm();
    const a = await startAgent({ LLM_BASE_URL: `${llm.base}/v1`, LLM_MODEL: 'helpdesk-test-model', LLM_API_KEY: KEY });
    const r1 = await chat(a, 'Outlook keeps asking for my password');
    expect(r1.status).toBe(200);
    expect(r1.json).toMatchObject({ history_turns: 1, responder: 'openai-compatible' });
    expect(r1.json.metadata).toMatchObject({ responder: 'openai-compatible', offline: false, model: 'helpdesk-test-model' });
    const r2 = await chat(a, 'Any update?');
    expect(r2.json.history_turns).toBe(2);
    expect(r2.json.reply).toBe('model saw 2 user turns; first: Outlook keeps asking for my password');

    expect(llm.seen).toHaveLength(2);
    expect(llm.seen[1]!.path).toBe('/v1/chat/completions');
    expect(llm.seen[1]!.auth).toBe(`Bearer ${KEY}`);
    expect(llm.seen[1]!.body.model).toBe('helpdesk-test-model');
    expect(llm.seen[1]!.body.messages.map((m: any) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);
    expect(llm.seen[1]!.body.messages[2].content).toBe(r1.json.reply);

    const st = await call(a, 'GET', '/status');
    expect(st.json.llm).toMatchObject({ url: `${llm.base}/v1/chat/completions`, model: 'helpdesk-test-model', api_key_set: true });
    for (const text of [r1.text, r2.text, st.text, a.output()]) expect(text).not.toContain(KEY);
  });

  it('accepts a base URL without /v1', async () => {
    const llm = await fakeLlm();
    const a = await startAgent({ LLM_BASE_URL: llm.base });
    expect((await chat(a, 'hello')).status).toBe(200);
    expect(llm.seen[0]!.path).toBe('/v1/chat/completions');
    expect(llm.seen[0]!.auth).toBeUndefined();
  });

  it('answers 502 on an endpoint error without echoing its body or the key, and records no turn', async () => {
    const llm = await fakeLlm({ status: 401 });
    const a = await startAgent({ LLM_BASE_URL: llm.base, LLM_API_KEY: KEY });
    const r = await chat(a, 'reset my password');
    expect(r.status).toBe(502);
    expect(r.json.error.code).toBe('llm_error');
    expect(r.json.error.message).toMatch(/answered HTTP 401/);
    expect(r.text).not.toContain(KEY);
    expect(a.output()).not.toContain(KEY);
    expect((await call(a, 'GET', '/status')).json.history_turns).toBe(0);
  });

  it('answers 502 when the endpoint cannot be reached', async () => {
    const port = await closedPort();
    const a = await startAgent({ LLM_BASE_URL: `http://user:${KEY}@127.0.0.1:${port}/v1`, LLM_API_KEY: KEY });
    const r = await chat(a, 'hello');
    expect(r.status).toBe(502);
    expect(r.json.error).toMatchObject({ code: 'llm_unreachable' });
    expect(r.json.error.message).toMatch(/ECONNREFUSED/);
    expect(r.text).not.toContain(KEY);
    expect(a.output()).not.toContain(KEY);
  });
});
